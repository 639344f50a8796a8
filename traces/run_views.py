"""The run page and its parts: span tree and waterfall, span details, story, live refresh,
conversation, compare and JSON export.

The page stays fast on big traces by loading span *metadata* only (no input, output,
attributes or events) in one query, ordering the tree and placing the waterfall bars in Python
in one pass, rendering a capped number of rows (the rest on "show more"), and fetching a span's
content only when someone selects it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import zip_longest

from django.db.models import Case, CharField, Prefetch, Value, When
from django.db.models.functions import MD5, Left
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET
from rest_framework.renderers import JSONRenderer

from cockpit.realtime import TOPIC_PATTERN
from cockpit.roles import VIEWER, role_required
from traces import story
from traces.models import Run, Span
from traces.serializers import RunDetailSerializer
from traces.views import format_duration

# Rows of the tree and waterfall rendered per request; "show more" fetches the next batch.
ROWS_PER_BATCH = 250
# Runs up to this size open fully expanded; bigger ones open with subtrees below the root's
# children collapsed. Subtrees this deep are collapsed in every run.
EXPAND_ALL_UP_TO = 150
COLLAPSE_FROM_DEPTH = 4
# A run counts as live while it has no root span yet or its last span ended this recently.
LIVE_FOR = timedelta(minutes=2)
# Other runs of the same conversation listed in the run header.
CONVERSATION_RUNS_IN_HEADER = 8
CONVERSATION_RUNS_MAX = 500
COMPARE_SPANS_MAX = 2000
STORY_STEPS_MAX = 200


# --- Fetching -------------------------------------------------------------------------------


def _get_run(request, trace_id: str) -> tuple[Run, list[Run]]:
    """The run with this trace id: the newest one, or the one of ?project=<name>.

    Trace ids are chosen by agents, so two projects may hold the same one; the others are
    returned so the page can point at them.
    """
    candidates = list(
        Run.objects.filter(trace_id=trace_id)
        .select_related("agent", "project")
        .order_by("-started_at", "-id")
    )
    wanted = request.GET.get("project")
    matching = [run for run in candidates if not wanted or run.project.name == wanted]
    if not matching:
        raise Http404("No run has this trace id.")
    run = matching[0]
    return run, [other for other in candidates if other.pk != run.pk]


@dataclass
class SpanRow:
    """One span as the tree, the waterfall and the signals see it: metadata, no content.

    A plain object instead of a model instance: building 2,000 deferred model instances costs
    more than the query itself.
    """

    pk: int
    span_id: str
    parent_span_id: str
    kind: str
    name: str
    provider: str
    model: str
    tool_name: str
    started_at: datetime
    ended_at: datetime
    duration_ms: float
    status: str
    error_type: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    cost_known: bool
    pii: dict
    input_truncated: bool
    output_truncated: bool
    args_digest: str
    error_head: str


ROW_FIELDS = tuple(f.name for f in fields(SpanRow))


def tree_spans(run: Run, limit: int | None = None) -> list[SpanRow]:
    """The run's spans with tree metadata only, plus a digest of each tool call's arguments
    (loops and retries compare arguments without loading them)."""
    spans = (
        run.spans.annotate(
            args_digest=Case(
                When(kind=Span.Kind.TOOL, then=MD5("input")),
                default=Value(""),
                output_field=CharField(),
            ),
            error_head=Left("error_message", 200),
        )
        .order_by("started_at", "id")
        .values_list(*ROW_FIELDS)
    )
    return [SpanRow(*values) for values in (spans[:limit] if limit else spans)]


def tree_order(spans: list) -> list[tuple]:
    """Spans depth first under their parents, each with its depth; siblings in start order.

    A span whose parent is missing (not arrived yet, or cut off) is shown as a root. Parent
    ids come from agents, so cycles are possible: every span is visited exactly once.
    """
    by_id = {span.span_id: span for span in spans}
    children = defaultdict(list)
    roots = []
    for span in spans:
        if span.parent_span_id and span.parent_span_id in by_id:
            children[span.parent_span_id].append(span)
        else:
            roots.append(span)
    ordered: list[tuple] = []
    seen: set[int] = set()

    def walk(start) -> None:
        stack = [(start, 0)]
        while stack:
            span, depth = stack.pop()
            if span.pk in seen:
                continue
            seen.add(span.pk)
            ordered.append((span, depth))
            stack.extend((child, depth + 1) for child in reversed(children[span.span_id]))

    for root in roots:
        walk(root)
    for span in spans:  # Only spans caught in a parent cycle are left.
        walk(span)
    return ordered


def _readable(text: str, fmt: str) -> str:
    """Content as a person reads it: JSON indented, anything else as it came."""
    if fmt in {"messages", "json"}:
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return text
    return text


def is_live(run: Run, now=None) -> bool:
    now = now or timezone.now()
    return run.status == Run.Status.RUNNING or run.ended_at > now - LIVE_FOR


# --- Tree and waterfall -----------------------------------------------------------------------


def layout_rows(run: Run, spans: list[SpanRow], keep_open: set[str] = frozenset()) -> list[SpanRow]:
    """Spans in tree order, annotated for the tree and the waterfall, in one pass.

    Each span gets depth, has_children, collapsed (its subtree starts folded), hidden (inside a
    folded subtree), bar_start/bar_width (percent of the run's window) and display strings.
    `keep_open` lists span ids whose subtrees stay open (the path to the error origin).
    """
    ordered = tree_order(spans)
    window_ms = max(
        [run.duration_ms, 1.0]
        + [(span.ended_at - run.started_at).total_seconds() * 1000 for span in spans]
    )
    big = len(spans) > EXPAND_ALL_UP_TO
    folded_at: list[int] = []  # depths of folded ancestors of the current row
    rows = []
    for index, (span, depth) in enumerate(ordered):
        while folded_at and folded_at[-1] >= depth:
            folded_at.pop()
        next_depth = ordered[index + 1][1] if index + 1 < len(ordered) else -1
        span.index = index
        span.depth = depth
        span.has_children = next_depth > depth
        span.hidden = bool(folded_at)
        span.collapsed = (
            span.has_children
            and span.span_id not in keep_open
            and (depth >= COLLAPSE_FROM_DEPTH or (big and depth >= 1))
        )
        if span.collapsed:
            folded_at.append(depth)
        offset_ms = max((span.started_at - run.started_at).total_seconds() * 1000, 0)
        span.offset_ms = offset_ms
        # Formatted here so the template prints plain numbers (no exponent, no locale).
        span.bar_start = f"{100 * offset_ms / window_ms:.3f}"
        span.bar_width = f"{100 * span.duration_ms / window_ms:.3f}"
        span.offset_display = format_duration(offset_ms)
        span.duration_display = format_duration(span.duration_ms)
        rows.append(span)
    run.window_ms = window_ms
    return rows


def _ancestors(spans: list[SpanRow], span_id: str) -> set[str]:
    parent_of = {span.span_id: span.parent_span_id for span in spans}
    found: set[str] = set()
    while span_id and span_id not in found:
        found.add(span_id)
        span_id = parent_of.get(span_id, "")
    return found


def axis_ticks(window_ms: float, count: int = 5) -> list[dict]:
    return [
        {"percent": 100 * i / count, "label": format_duration(window_ms * i / count)}
        for i in range(count + 1)
    ]


def run_context(run: Run, offset: int = 0) -> dict:
    """Everything the header, signals, tree and waterfall show (two queries: spans, and the
    conversation's other runs when the run belongs to one)."""
    spans = tree_spans(run)
    depth_of = story.depths(spans)
    signals = story.compute_signals(spans, depth_of)
    keep_open = _ancestors(spans, signals.error_origin.span_id) if signals.error_origin else set()
    rows = layout_rows(run, spans, keep_open)
    critical = set(signals.critical_path)
    repeated = {span_id for repeat in signals.repeats for span_id in repeat.span_ids[1:]}
    origin = signals.error_origin
    for span in rows:
        span.on_critical_path = span.span_id in critical
        span.repeated = span.span_id in repeated
        span.is_error_origin = span is origin
        # Precomputed here: a Django template tag per row costs more than Python does.
        span.row_class = " ".join(
            name
            for name, on in (
                ("is-error", span.status == Span.Status.ERROR),
                ("is-origin", span.is_error_origin),
                ("on-critical", span.on_critical_path),
            )
            if on
        )
        hint = span.tool_name or span.model
        span.hint = hint if hint and hint not in span.name else ""
    critical_ms = sum(
        span.duration_ms for span in rows if span.on_critical_path and not span.has_children
    )
    run.duration_display = format_duration(run.duration_ms)
    conversation_runs = []
    if run.conversation_id:
        conversation_runs = list(
            Run.objects.filter(project_id=run.project_id, conversation_id=run.conversation_id)
            .exclude(pk=run.pk)
            .only("id", "trace_id", "name", "started_at", "status", "outcome")
            .order_by("started_at")[:CONVERSATION_RUNS_IN_HEADER]
        )
    batch = rows[offset : offset + ROWS_PER_BATCH]
    return {
        "run": run,
        # Row links are built from this prefix: one reverse() instead of one per row.
        "detail_prefix": reverse("span-detail", args=[run.trace_id, "-"])[:-2],
        "rows": batch,
        "next_offset": offset + ROWS_PER_BATCH if offset + ROWS_PER_BATCH < len(rows) else None,
        "row_total": len(rows),
        "ticks": axis_ticks(run.window_ms),
        "signals": signals,
        "critical_count": len(critical),
        "critical_display": format_duration(critical_ms),
        "slowest_display": format_duration(signals.slowest.duration_ms) if signals.slowest else "",
        "conversation_runs": conversation_runs,
        "live": is_live(run),
        "live_topic": f"run.{run.trace_id}" if TOPIC_PATTERN.match(f"run.{run.trace_id}") else "",
    }


# --- Pages and fragments ---------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def run_detail(request, trace_id):
    run, others = _get_run(request, trace_id)
    context = run_context(run)
    previous = None
    if run.agent_id:
        previous = (
            Run.objects.filter(agent_id=run.agent_id, started_at__lt=run.started_at)
            .only("id", "trace_id", "started_at", "version")
            .order_by("-started_at", "-id")
            .first()
        )
    context.update(others=others, previous=previous, project_query=_project_query(run))
    selected = request.GET.get("span")
    if selected:
        # A deep link to one span renders its details in place, without JavaScript.
        context["detail"] = _span_detail_context(run, selected)
    return render(request, "traces/run_detail.html", context)


@require_GET
@role_required(VIEWER)
def run_live(request, trace_id):
    """The header and signals, with the tree swapped out of band: what a live refresh fetches."""
    run, _ = _get_run(request, trace_id)
    context = run_context(run)
    context.update(project_query=_project_query(run), oob=True)
    return render(request, "traces/_run_header.html", context)


@require_GET
@role_required(VIEWER)
def run_rows(request, trace_id):
    """The next batch of tree and waterfall rows ("show more")."""
    run, _ = _get_run(request, trace_id)
    try:
        offset = max(int(request.GET.get("offset", 0)), 0)
    except ValueError:
        offset = 0
    context = run_context(run, offset)
    context["project_query"] = _project_query(run)
    return render(request, "traces/_span_rows.html", context)


def _project_query(run: Run) -> str:
    return f"?project={run.project.name}"


def _span_detail_context(run: Run, span_id: str) -> dict:
    span = get_object_or_404(Span, run_id=run.pk, span_id=span_id)
    span.duration_display = format_duration(span.duration_ms)
    span.offset_display = format_duration(
        max((span.started_at - run.started_at).total_seconds() * 1000, 0)
    )
    return {
        "span": span,
        "input_block": content_block(span.input, span.input_format, span.input_truncated),
        "output_block": content_block(span.output, span.output_format, span.output_truncated),
        "attribute_rows": attribute_rows(span.attributes),
        "resource_rows": attribute_rows(span.resource),
        "events": [_event(event) for event in span.events if isinstance(event, dict)],
    }


@require_GET
@role_required(VIEWER)
def span_detail(request, trace_id, span_id):
    run, _ = _get_run(request, trace_id)
    context = _span_detail_context(run, span_id)
    context["run"] = run
    return render(request, "traces/_span_detail.html", context)


@require_GET
@role_required(VIEWER)
def run_story(request, trace_id):
    run, _ = _get_run(request, trace_id)
    spans = list(run.spans.defer("attributes", "resource", "events").order_by("started_at", "id"))
    steps = story.story_steps(spans, limit=STORY_STEPS_MAX)
    for step in steps:
        step.duration_display = format_duration(step.duration_ms)
    return render(
        request,
        "traces/_story.html",
        {
            "run": run,
            "steps": steps,
            "steps_cut": len(steps) == STORY_STEPS_MAX,
            "answer": story.quote(story.final_answer(spans), 600),
            "project_query": _project_query(run),
        },
    )


@require_GET
@role_required(VIEWER)
def run_export(request, trace_id):
    run, _ = _get_run(request, trace_id)
    run = (
        Run.objects.select_related("agent", "project")
        .prefetch_related(
            Prefetch("spans", Span.objects.select_related("agent").order_by("started_at", "id"))
        )
        .get(pk=run.pk)
    )
    body = JSONRenderer().render(RunDetailSerializer(run, context={"request": request}).data)
    response = HttpResponse(_script_safe_json(body), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="run-{run.trace_id}.json"'
    return response


def _script_safe_json(body: bytes) -> bytes:
    # <, > and & only occur inside JSON strings, where \u escapes mean the same: a browser
    # that sniffs or a tool that embeds the export in HTML never meets a raw tag.
    return body.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")


@require_GET
@role_required(VIEWER)
def conversation_detail(request, conversation_id):
    runs = Run.objects.filter(conversation_id=conversation_id).select_related("agent", "project")
    if request.GET.get("project"):
        runs = runs.filter(project__name=request.GET["project"])
    runs = list(runs.order_by("started_at", "id")[:CONVERSATION_RUNS_MAX])
    if not runs:
        raise Http404("No run belongs to this conversation.")
    for run in runs:
        run.duration_display = format_duration(run.duration_ms)
    return render(
        request,
        "traces/conversation.html",
        {
            "conversation_id": conversation_id,
            "runs": runs,
            "runs_cut": len(runs) == CONVERSATION_RUNS_MAX,
            "total_cost": sum((run.cost_usd for run in runs), Decimal(0)),
            "total_tokens": sum(run.total_tokens for run in runs),
        },
    )


# --- Span details -------------------------------------------------------------------------------


def content_block(text: str, fmt: str, truncated: bool) -> dict | None:
    """How to show one side of a span's content: messages, pretty JSON or plain text."""
    if not text:
        return None
    block = {"chars": len(text), "truncated": truncated, "messages": None, "text": text}
    messages = story.messages_of(text, fmt)
    if messages:
        block["messages"] = [_message(message) for message in messages]
    else:
        block["text"] = _readable(text, fmt)
        if fmt == "text" and text[:1] in "[{":
            block["text"] = _readable(text, "json")
    return block


def _message(message: dict) -> dict:
    role = str(message.get("role") or "unknown")
    return {
        "role": role,
        "role_class": role if role in {"system", "user", "assistant", "tool"} else "other",
        "content": message.get("content") if isinstance(message.get("content"), str) else "",
        "tool_call_id": str(message.get("tool_call_id") or ""),
        "tool_calls": [
            {
                "name": str(call.get("name") or ""),
                "id": str(call.get("id") or ""),
                "arguments": _readable(str(call.get("arguments") or ""), "json"),
            }
            for call in message.get("tool_calls") or []
            if isinstance(call, dict)
        ],
    }


def attribute_rows(attributes) -> list[tuple[str, str]]:
    if not isinstance(attributes, dict):
        return []
    return [
        (str(key), value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in sorted(attributes.items())
    ]


def _event(event: dict) -> dict:
    attributes = event.get("attributes") if isinstance(event.get("attributes"), dict) else {}
    stacktrace = attributes.get("exception.stacktrace")
    return {
        "name": str(event.get("name") or "event"),
        "offset_display": format_duration(event.get("offset_ms"))
        if isinstance(event.get("offset_ms"), int | float)
        else "",
        "stacktrace": stacktrace if isinstance(stacktrace, str) else "",
        "rows": [row for row in attribute_rows(attributes) if row[0] != "exception.stacktrace"],
    }


# --- Compare --------------------------------------------------------------------------------

TRACE_ID = re.compile(r"^[0-9a-fA-F]{1,32}$")


def _newest_run(trace_id: str) -> Run:
    run = (
        Run.objects.filter(trace_id=trace_id.strip().lower())
        .select_related("agent", "project")
        .order_by("-started_at", "-id")
        .first()
    )
    if run is None:
        raise Http404("No run has this trace id.")
    return run


def step_signature(span: SpanRow) -> str:
    """What a step did, for alignment: its kind and the tool, model or name it used."""
    return f"{span.kind}:{span.tool_name or span.model or span.name}"


def align_steps(a: list[SpanRow], b: list[SpanRow]) -> list[dict]:
    """Pair the steps of two runs: equal signatures side by side, the rest as added, removed
    or changed (difflib's longest matching blocks over the signature sequences)."""
    matcher = difflib.SequenceMatcher(
        None, [step_signature(s) for s in a], [step_signature(s) for s in b], autojunk=False
    )
    pairs = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        for left, right in zip_longest(a[a0:a1], b[b0:b1]):
            change = {"equal": "same", "replace": "changed", "delete": "removed", "insert": "added"}
            pairs.append({"a": left, "b": right, "change": change[op], **_deltas(left, right)})
    return pairs


def _deltas(a: SpanRow | None, b: SpanRow | None) -> dict:
    if a is None or b is None:
        return {"slower": False, "faster": False, "costlier": False, "status_changed": False}
    # Latency differences under 20 % or 50 ms are noise, not a change worth a colour.
    slack = max(0.2 * a.duration_ms, 50)
    return {
        "slower": b.duration_ms - a.duration_ms > slack,
        "faster": a.duration_ms - b.duration_ms > slack,
        "costlier": (b.cost_usd or 0) > (a.cost_usd or 0) * Decimal("1.2") + Decimal("0.00001"),
        "status_changed": a.status != b.status,
    }


def tool_differences(a: list[SpanRow], b: list[SpanRow]) -> list[dict]:
    calls_a = Counter(story.tool_label(s) for s in a if s.kind == "tool")
    calls_b = Counter(story.tool_label(s) for s in b if s.kind == "tool")
    return [
        {
            "tool": tool,
            "a": calls_a[tool],
            "b": calls_b[tool],
            "changed": calls_a[tool] != calls_b[tool],
        }
        for tool in sorted(calls_a.keys() | calls_b.keys())
    ]


def _summary_rows(a: Run, b: Run) -> list[dict]:
    def row(label, value_a, value_b, display_a=None, display_b=None):
        return {
            "label": label,
            "a": display_a if display_a is not None else value_a,
            "b": display_b if display_b is not None else value_b,
            "changed": value_a != value_b,
        }

    return [
        row("Outcome", a.outcome or a.status, b.outcome or b.status),
        row("Version", a.version or "—", b.version or "—"),
        row(
            "Duration",
            round(a.duration_ms),
            round(b.duration_ms),
            format_duration(a.duration_ms),
            format_duration(b.duration_ms),
        ),
        row("Steps (spans)", a.span_count, b.span_count),
        row("LLM calls", a.llm_calls, b.llm_calls),
        row("Tool calls", a.tool_calls, b.tool_calls),
        row("Errors", a.error_count, b.error_count),
        row(
            "Tokens",
            a.total_tokens,
            b.total_tokens,
            f"{a.total_tokens:,}",
            f"{b.total_tokens:,}",
        ),
        row("Cost", a.cost_usd, b.cost_usd, f"${a.cost_usd:.4f}", f"${b.cost_usd:.4f}"),
    ]


@require_GET
@role_required(VIEWER)
def run_compare(request):
    a_id, b_id = request.GET.get("a", "").strip(), request.GET.get("b", "").strip()
    context: dict = {"a_id": a_id, "b_id": b_id}
    if not (a_id and b_id):
        return render(request, "traces/compare.html", context)
    for value in (a_id, b_id):
        if not TRACE_ID.match(value):
            context["error"] = "A trace id is up to 32 hexadecimal characters."
            return render(request, "traces/compare.html", context, status=400)
    a, b = _newest_run(a_id), _newest_run(b_id)
    spans_a = [s for s, _ in tree_order(tree_spans(a, COMPARE_SPANS_MAX))]
    spans_b = [s for s, _ in tree_order(tree_spans(b, COMPARE_SPANS_MAX))]
    for span in spans_a + spans_b:
        span.duration_display = format_duration(span.duration_ms)
    context.update(
        a=a,
        b=b,
        summary=_summary_rows(a, b),
        tools=tool_differences(spans_a, spans_b),
        pairs=align_steps(spans_a, spans_b),
        cut=max(a.span_count, b.span_count) > COMPARE_SPANS_MAX,
    )
    return render(request, "traces/compare.html", context)
