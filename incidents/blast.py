"""The blast radius of an incident, computed from traces.

The runs in scope are the runs linked by hand as trigger or affected, plus every run matching
one of the incident's saved queries (re-run each time, so runs that arrive while the incident
is open are counted). Evidence links explain what happened; they are not harm, so they are
left out. From those runs: how many, the conversations and end users they touched, their LLM
spend, their tool calls with side effects, the irreversible ones, and the external recipients
named in those calls' arguments.

The result is stored on the incident (Incident.blast_radius) with the description of the
query that produced it, and recomputed when links change or when a page finds it stale.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from incidents.models import Incident, ToolEffect, TraceLink
from traces.models import Run, Span

# An open incident's blast radius is recomputed when a page finds it older than this.
STALE_AFTER = timedelta(seconds=30)
# Span-level figures read the spans of at most this many runs (the newest): the run-level
# figures (runs, conversations, users) always count every run in scope.
MAX_RUNS_FOR_SPANS = 5000
# Tool-call arguments read for recipients, and examples kept for the page.
MAX_ARGUMENTS_READ = 2000
EXAMPLES = 20

HARM = (TraceLink.Relation.TRIGGER, TraceLink.Relation.AFFECTED)
# Argument names that say who receives what a tool sends.
RECIPIENT_KEYS = re.compile(
    r"^(to|cc|bcc|recipients?|email|e-?mail_address|phone|phone_number|iban|"
    r"account_number|channel|webhook_url|destination)$",
    re.IGNORECASE,
)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def runs_in_scope(incident: Incident, now=None):
    """The runs the blast radius counts, as a queryset, and how it was chosen, in words."""
    now = now or timezone.now()
    _, window_end = incident.window(now)
    scope = Q(pk__in=incident.trace_links.filter(relation__in=HARM).values("run_id"))
    described = []
    linked = incident.trace_links.filter(relation__in=HARM).count()
    if linked:
        described.append(f"{linked} run{'s' * (linked != 1)} linked by hand as trigger or affected")
    for query in incident.trace_queries.select_related("agent").exclude(
        relation=TraceLink.Relation.EVIDENCE
    ):
        scope |= query_filter(query, window_end)
        described.append(f"runs where {query.describe()}")
    runs = Run.objects.filter(project_id=incident.project_id).filter(scope)
    return runs, described


def query_filter(query, window_end) -> Q:
    """The runs one saved query matches."""
    condition = Q(agent_id=query.agent_id, started_at__gte=query.since)
    condition &= Q(started_at__lt=query.until or window_end)
    if query.status:
        condition &= Q(status=query.status)
    if query.outcome:
        condition &= Q(outcome=query.outcome)
    if query.error_type:
        failed = Span.objects.filter(run_id=OuterRef("pk"), error_type=query.error_type)
        condition &= Q(Exists(failed))
    return condition


def compute(incident: Incident, now=None) -> dict:
    """The blast radius as a JSON-ready dict (money as decimal strings)."""
    now = now or timezone.now()
    runs, described = runs_in_scope(incident, now)
    totals = runs.aggregate(
        runs=Count("id"),
        conversations=Count("conversation_id", distinct=True, filter=~Q(conversation_id="")),
        users=Count("user_id", distinct=True, filter=~Q(user_id="")),
        failed=Count("id", filter=Q(status=Run.Status.ERROR) | Q(outcome=Run.Outcome.FAILURE)),
    )
    run_ids = list(
        runs.order_by("-started_at", "-id").values_list("pk", flat=True)[:MAX_RUNS_FOR_SPANS]
    )
    spend = Span.objects.filter(run_id__in=run_ids, kind=Span.Kind.LLM).aggregate(
        cost=Sum("cost_usd"),
        calls=Count("id"),
        unpriced=Count("id", filter=Q(cost_known=False)),
    )
    effects = {
        row.tool_name: row for row in ToolEffect.objects.filter(project_id=incident.project_id)
    }
    tools = []
    side_effect_calls = irreversible_calls = 0
    for row in (
        Span.objects.filter(run_id__in=run_ids, kind=Span.Kind.TOOL)
        .values("tool_name")
        .order_by()
        .annotate(calls=Count("id"), errors=Count("id", filter=Q(status=Span.Status.ERROR)))
        .order_by("-calls", "tool_name")
    ):
        marking = effects.get(row["tool_name"])
        effect = marking.effect if marking else ToolEffect.Effect.SIDE_EFFECT
        tools.append(
            {
                "tool": row["tool_name"],
                "calls": row["calls"],
                "errors": row["errors"],
                "effect": effect,
                "effect_label": ToolEffect.Effect(effect).label,
                "marked": marking is not None,
            }
        )
        if effect != ToolEffect.Effect.READ_ONLY:
            side_effect_calls += row["calls"]
        if effect == ToolEffect.Effect.IRREVERSIBLE:
            irreversible_calls += row["calls"]
    irreversible_tools = [t["tool"] for t in tools if t["effect"] == ToolEffect.Effect.IRREVERSIBLE]
    irreversible = [
        {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "tool": span.tool_name,
            "at": span.started_at.isoformat(),
            "status": span.status,
        }
        for span in Span.objects.filter(
            run_id__in=run_ids, kind=Span.Kind.TOOL, tool_name__in=irreversible_tools
        )
        .only("trace_id", "span_id", "tool_name", "started_at", "status")
        .order_by("started_at", "id")[:EXAMPLES]
    ]
    recipients = external_recipients(run_ids, tools)
    cost = spend["cost"] or Decimal(0)
    return {
        "computed_at": now.isoformat(),
        "scope": described,
        "runs": totals["runs"],
        "failed_runs": totals["failed"],
        "conversations": totals["conversations"],
        "users": totals["users"],
        "llm_calls": spend["calls"],
        "llm_spend_usd": str(cost.quantize(Decimal("0.000001"))),
        "llm_unpriced_calls": spend["unpriced"],
        "tool_calls": sum(t["calls"] for t in tools),
        "side_effect_calls": side_effect_calls,
        "irreversible_calls": irreversible_calls,
        "irreversible": irreversible,
        "tools": tools,
        "recipients": recipients["examples"],
        "recipient_count": recipients["count"],
        "spans_cut": totals["runs"] > len(run_ids),
        "span_runs": len(run_ids),
    }


def external_recipients(run_ids, tools) -> dict:
    """Who the side-effecting tool calls sent something to: values of recipient-like argument
    names, and e-mail addresses anywhere in the arguments. Distinct, first EXAMPLES kept."""
    sending = [t["tool"] for t in tools if t["effect"] != ToolEffect.Effect.READ_ONLY]
    found: list[str] = []
    seen: set[str] = set()
    arguments = (
        Span.objects.filter(run_id__in=run_ids, kind=Span.Kind.TOOL, tool_name__in=sending)
        .exclude(input="")
        .order_by("started_at", "id")
        .values_list("input", flat=True)[:MAX_ARGUMENTS_READ]
    )
    for text in arguments:
        for value in recipients_in(text):
            key = value.lower()
            if key not in seen:
                seen.add(key)
                found.append(value)
    return {"count": len(found), "examples": found[:EXAMPLES]}


def recipients_in(text: str) -> list[str]:
    values: list[str] = []
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    _collect(decoded, values)
    values.extend(EMAIL.findall(text))
    return [v.strip()[:200] for v in values if v and v.strip()]


def _collect(value, out: list[str], key: str = "") -> None:
    if isinstance(value, dict):
        for name, inner in value.items():
            _collect(inner, out, str(name))
    elif isinstance(value, list):
        for inner in value:
            _collect(inner, out, key)
    elif isinstance(value, str | int) and not isinstance(value, bool) and RECIPIENT_KEYS.match(key):
        out.append(str(value))


def refresh(incident: Incident, now=None) -> dict:
    """Recompute and store the blast radius; returns it."""
    now = now or timezone.now()
    radius = compute(incident, now)
    Incident.objects.filter(pk=incident.pk).update(blast_radius=radius, blast_radius_at=now)
    incident.blast_radius, incident.blast_radius_at = radius, now
    return radius


def current(incident: Incident, now=None) -> dict:
    """The stored blast radius, recomputed first if it is stale and the incident is open."""
    now = now or timezone.now()
    stale = incident.blast_radius_at is None or (
        incident.resolved_at is None and now - incident.blast_radius_at > STALE_AFTER
    )
    return refresh(incident, now) if stale else incident.blast_radius
