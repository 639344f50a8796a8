"""What a run did, for people: numbered plain-language steps and the signals worth a look.

Pure functions over span-like objects (traces.models.Span or anything with the same fields):
no database access here, so the run page, the story fragment and the compare page share them
and the tests feed them plain fixtures. Content (span input/output) is only read by
``story_steps``; the signals need metadata plus ``args_digest`` on tool spans (a hash of the
arguments, computed by the database so the arguments themselves are not loaded).

Everything returned is plain text or numbers: templates escape it like any agent data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

# Kinds that do work themselves, as opposed to agent/chain spans that only group children.
WORK_KINDS = frozenset({"llm", "tool", "retriever", "guardrail", "approval", "other"})
CONTROL_KINDS = frozenset({"guardrail", "approval"})
# How much of a prompt, an argument list or a result a story step quotes.
QUOTE_CHARS = 160


# --- Tree --------------------------------------------------------------------------------------


def children_by_parent(spans: Sequence) -> tuple[dict[str, list], list]:
    """Children of each span id (in the order given) and the roots.

    A span whose parent is missing is a root. Parent ids come from agents, so they may form
    cycles; callers that walk the tree must guard against revisiting.
    """
    ids = {span.span_id for span in spans}
    children: dict[str, list] = defaultdict(list)
    roots = []
    for span in spans:
        if (
            span.parent_span_id
            and span.parent_span_id in ids
            and span.parent_span_id != span.span_id
        ):
            children[span.parent_span_id].append(span)
        else:
            roots.append(span)
    return children, roots


def depths(spans: Sequence) -> dict[str, int]:
    """The depth of every span id (roots are 0); spans caught in a cycle count as roots."""
    children, roots = children_by_parent(spans)
    found: dict[str, int] = {}
    stack = [(root, 0) for root in roots]
    while stack:
        span, depth = stack.pop()
        if span.span_id in found:
            continue
        found[span.span_id] = depth
        stack.extend((child, depth + 1) for child in children[span.span_id])
    for span in spans:
        found.setdefault(span.span_id, 0)
    return found


# --- Signals -----------------------------------------------------------------------------------


@dataclass
class Repeat:
    """The same tool called with the same arguments more than once."""

    tool: str
    count: int
    span_ids: list[str]
    kind: str  # "retry" when an earlier call failed, else "loop"


@dataclass
class Signals:
    repeats: list[Repeat] = field(default_factory=list)
    slowest: object | None = None
    most_expensive: object | None = None
    critical_path: list[str] = field(default_factory=list)
    error_origin: object | None = None
    error_origin_depth: int = 0
    pii: dict[str, int] = field(default_factory=dict)
    pii_span_ids: list[str] = field(default_factory=list)
    controls: list = field(default_factory=list)  # approval and guardrail spans

    @property
    def any(self) -> bool:
        return bool(
            self.repeats
            or self.slowest
            or self.most_expensive
            or self.error_origin
            or self.pii
            or self.controls
        )


def tool_label(span) -> str:
    return span.tool_name or span.name


def repeated_calls(spans: Iterable) -> list[Repeat]:
    """Tool calls repeated with identical arguments, in the order they first happened.

    A repeat after a failed call is a retry; a repeat of calls that succeeded is a loop (the
    agent asked again for what it already had).
    """
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for span in sorted(spans, key=lambda s: s.started_at):
        if span.kind == "tool":
            groups[(tool_label(span), getattr(span, "args_digest", "") or "")].append(span)
    repeats = []
    for (tool, _), calls in groups.items():
        if len(calls) < 2:
            continue
        retried = any(call.status == "error" for call in calls[:-1])
        repeats.append(
            Repeat(
                tool=tool,
                count=len(calls),
                span_ids=[call.span_id for call in calls],
                kind="retry" if retried else "loop",
            )
        )
    # Groups were created in start order, so repeats come in the order they began.
    return repeats


def work_spans(spans: Sequence) -> list:
    """Spans that did work themselves; all spans when there are none (a run of only agents)."""
    working = [span for span in spans if span.kind in WORK_KINDS]
    return working or list(spans)


def slowest_step(spans: Sequence):
    working = work_spans(spans)
    return max(working, key=lambda s: s.duration_ms) if working else None


def most_expensive_step(spans: Sequence):
    priced = [span for span in spans if span.cost_usd]
    return max(priced, key=lambda s: s.cost_usd) if priced else None


def critical_path(spans: Sequence) -> list[str]:
    """The chain of spans the run waited on, from the root down, as span ids.

    Inside each span, walk back from its end: the child that finished last was waited on; before
    it started, the child that finished last before that moment; and so on. Each chosen child
    is followed the same way. O(n log n) for the sort of each span's children.
    """
    children, roots = children_by_parent(spans)
    if not roots:
        return []
    root = max(roots, key=lambda s: (s.ended_at, -s.started_at.timestamp()))
    path: list[str] = []
    seen: set[str] = set()
    stack = [root]
    while stack:
        span = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        path.append(span.span_id)
        waited_on = []
        cursor = span.ended_at
        for child in sorted(children[span.span_id], key=lambda s: s.ended_at, reverse=True):
            if child.ended_at <= cursor:
                waited_on.append(child)
                cursor = child.started_at
        # Visit in start order: the earliest blocking child first.
        stack.extend(waited_on)
    return path


def error_origin(spans: Sequence, depth_of: dict[str, int] | None = None):
    """The deepest failing span (where the error started), earliest first on ties."""
    failing = [span for span in spans if span.status == "error"]
    if not failing:
        return None, 0
    depth_of = depth_of if depth_of is not None else depths(spans)
    origin = max(failing, key=lambda s: (depth_of.get(s.span_id, 0), -s.started_at.timestamp()))
    return origin, depth_of.get(origin.span_id, 0)


def pii_flags(spans: Iterable) -> tuple[dict[str, int], list[str]]:
    totals: dict[str, int] = defaultdict(int)
    flagged = []
    for span in spans:
        if span.pii:
            flagged.append(span.span_id)
            for kind, count in span.pii.items():
                if isinstance(count, int):
                    totals[str(kind)] += count
    return dict(sorted(totals.items())), flagged


def compute_signals(spans: Sequence, depth_of: dict[str, int] | None = None) -> Signals:
    origin, origin_depth = error_origin(spans, depth_of)
    pii, pii_spans = pii_flags(spans)
    return Signals(
        repeats=repeated_calls(spans),
        slowest=slowest_step(spans) if len(spans) > 1 else None,
        most_expensive=most_expensive_step(spans),
        critical_path=critical_path(spans),
        error_origin=origin,
        error_origin_depth=origin_depth,
        pii=pii,
        pii_span_ids=pii_spans,
        controls=sorted((s for s in spans if s.kind in CONTROL_KINDS), key=lambda s: s.started_at),
    )


# --- Story -------------------------------------------------------------------------------------


@dataclass
class Step:
    number: int
    text: str
    span_id: str
    kind: str
    duration_ms: float
    cost_usd: Decimal | None
    status: str
    detail: str = ""  # a quote: the request, arguments, a result or an answer


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """One line of at most `limit` characters, saying when it was cut."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def messages_of(text: str, fmt: str) -> list[dict]:
    """The normalised messages stored for a span (input_format/output_format "messages")."""
    if fmt != "messages" or not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []  # Cut at the size cap mid-JSON: shown as raw text elsewhere.
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _last_user_text(span) -> str:
    for message in reversed(messages_of(span.input, span.input_format)):
        if message.get("role") == "user" and message.get("content"):
            return str(message["content"])
    return "" if span.input_format == "messages" else span.input


def _assistant_reply(span) -> tuple[str, list[dict]]:
    """The text and tool calls of an LLM span's answer."""
    text, calls = "", []
    for message in messages_of(span.output, span.output_format):
        if message.get("role") in ("assistant", "", None):
            text = str(message.get("content") or text)
            calls += [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    if not text and not calls and span.output_format != "messages":
        text = span.output
    return text, calls


def _describe(span, is_root: bool) -> tuple[str, str]:
    """The sentence and quote of one step."""
    if span.kind == "llm":
        text, calls = _assistant_reply(span)
        model = span.model or "the model"
        if calls:
            names = ", ".join(quote(c.get("name") or "a tool", 60) for c in calls)
            args = "; ".join(quote(c.get("arguments") or "", 80) for c in calls)
            return f"Asked {model}, which decided to call {names}", f"with {args}" if args else ""
        if text:
            return f"Asked {model}, which answered", quote(text)
        return f"Asked {model}", ""
    if span.kind == "tool":
        name = tool_label(span)
        detail = []
        if span.input:
            detail.append(f"with {quote(span.input, 80)}")
        if span.output:
            detail.append(f"→ got {quote(span.output, 100)}")
        return f"Called the tool {name}", " ".join(detail)
    if span.kind == "retriever":
        return f"Looked up documents ({span.name})", quote(span.output) if span.output else ""
    if span.kind == "guardrail":
        verdict = "blocked it" if span.status == "error" else "passed"
        return f"Checked the guardrail {span.name}: {verdict}", ""
    if span.kind == "approval":
        return f"Asked a person for approval: {span.name}", quote(
            span.output
        ) if span.output else ""
    if is_root:
        request = _last_user_text(span)
        return "Received the request", quote(request) if request else ""
    return f"Ran {span.name}", ""


def story_steps(spans: Sequence, limit: int = 200) -> list[Step]:
    """The run as numbered steps, in tree order (parents before their children).

    The root becomes "received the request" (quoting the first user message the run saw), work
    spans become one step each, grouping spans (agent, chain) below the root are skipped unless
    they failed, and the run closes with the final answer when there is one.
    """
    children, roots = children_by_parent(spans)
    ordered: list[tuple[object, bool]] = []
    seen: set[str] = set()
    for root in sorted(roots, key=lambda s: s.started_at):
        stack = [(root, True)]
        while stack:
            span, is_root = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            ordered.append((span, is_root))
            kids = sorted(children[span.span_id], key=lambda s: s.started_at)
            stack.extend((child, False) for child in reversed(kids))

    first_llm = next((s for s, _ in ordered if s.kind == "llm"), None)
    steps: list[Step] = []
    for span, is_root in ordered:
        if len(steps) >= limit:
            break
        grouping = span.kind not in WORK_KINDS
        if grouping and not is_root and span.status != "error":
            continue
        text, detail = _describe(span, is_root and grouping)
        if is_root and grouping and not detail and first_llm is not None:
            request = _last_user_text(first_llm)
            detail = quote(request) if request else ""
        if span.status == "error":
            reason = quote(f"{span.error_type}: {span.error_message}".strip(": "), 120)
            text = f"{text} — failed" + (f" ({reason})" if reason else "")
        steps.append(
            Step(
                number=len(steps) + 1,
                text=text,
                span_id=span.span_id,
                kind=span.kind,
                duration_ms=span.duration_ms,
                cost_usd=span.cost_usd,
                status=span.status,
                detail=detail,
            )
        )
    return steps


def final_answer(spans: Sequence) -> str:
    """The last thing the agent said: the latest LLM answer without tool calls."""
    for span in sorted(spans, key=lambda s: s.ended_at, reverse=True):
        if span.kind == "llm":
            text, calls = _assistant_reply(span)
            if text and not calls:
                return text
    return ""
