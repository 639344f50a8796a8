"""The reviewer's pages: queue, request, decisions, queue health, CSV export, policies.

Every page is readable with the viewer role; deciding needs the reviewer role and a place on
the request's escalation chain (approvals.engine.may_decide), editing policies the admin role.
Both live pages re-fetch a named part of themselves when the engine announces a change: the
queue its #approval-queue-live, a request its #approval-live (approvals.engine._after_change).
"""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, Subquery, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals import engine
from approvals import health as queue_health
from approvals.forms import DecisionForm, ExportForm, HealthWindowForm, PolicyForm, QueueFilterForm
from approvals.models import (
    ApprovalEvent,
    ApprovalRequest,
    ApprovalVote,
    Decision,
    EscalationChain,
    EscalationLevel,
    Policy,
)
from cockpit import charts
from cockpit.csv_export import Echo, csv_cell
from cockpit.roles import ADMIN, REVIEWER, VIEWER, has_role, role_required
from traces.models import Run, Span
from traces.views import format_duration

# The queue shows this many pending requests (soonest deadline first) and reads at most
# QUEUE_SCAN of them, so the "at my levels" filter, applied in Python, still fills a page.
QUEUE_LIMIT = 100
QUEUE_SCAN = 1000
# What a queue row shows (templates/approvals/_queue_live.html) and the reviewer check reads.
QUEUE_FIELDS = (
    "action", "agent__name", "amount", "currency", "created_at", "expires_at", "level",
    "chain_snapshot", "level_due_at", "level_started_at", "risk_tier", "summary", "status",
)  # fmt: skip
# A deadline this close counts as "due soon" in the queue's summary.
DUE_SOON = timedelta(minutes=5)
# The last steps of the trace shown inline on a request, and the agent history it is judged by.
TRACE_STEPS = 8
AGENT_HISTORY = 50
RECENT_REJECTIONS = 5
EXPORT_DAYS = 30
# The id of the request page's live part: its re-fetch names it in HX-Trigger.
LIVE_REQUEST = "approval-live"


# --- Countdowns -------------------------------------------------------------------------------


def countdown(due, start, now) -> dict:
    """A deadline as the page first shows it; static/approvals/approvals.js then ticks it every
    second with the same text and colours: amber in the level's last quarter, red in its last
    tenth or minute, and "overdue" past it."""
    left = (due - now).total_seconds()
    budget = max((due - start).total_seconds(), 1)
    if left <= 0:
        state = "overdue"
    elif left <= max(60, budget * 0.1):
        state = "red"
    elif left <= budget * 0.25:
        state = "amber"
    else:
        state = "calm"
    return {"text": countdown_text(left), "state": state}


def countdown_text(seconds: float) -> str:
    """14:05 under an hour, 2h 05m under a day, 3d 4h beyond; "overdue 0:12" past zero."""
    if seconds <= 0:
        return "overdue " + countdown_text(-seconds) if seconds < 0 else "0:00"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600}h"


def budget_text(seconds: float) -> str:
    """A level's time budget: 45 s, 15 min, 1 h, 1 h 30 min, 2 d."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole % 86400 == 0:
        return f"{whole // 86400} d"
    hours, minutes = divmod(whole // 60, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


# --- Queue -------------------------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def queue(request):
    """Pending requests, soonest level deadline first, with the filters in the address.

    The live element (#approval-queue-live) re-fetches the same address and gets only itself.
    """
    form = QueueFilterForm(request.GET)
    form.is_valid()
    context = _queue_context(request, form)
    if request.htmx and not request.htmx.history_restore_request:
        response = render(request, "approvals/_queue_live.html", context)
    else:
        context["agent_names"] = _pending_agent_names(form.cleaned_data.get("agent"))
        response = render(request, "approvals/queue.html", context)
    # The same address answers with the page or its live part: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def _queue_context(request, form: QueueFilterForm) -> dict:
    user = request.user
    now = timezone.now()
    is_admin = has_role(user, ADMIN)
    is_reviewer = has_role(user, REVIEWER)
    group_names = (
        frozenset(user.groups.values_list("name", flat=True)) if is_reviewer else frozenset()
    )
    pending = (
        form.filter(ApprovalRequest.objects.pending())
        .select_related("agent")
        .only(*QUEUE_FIELDS)
        .order_by("level_due_at", "id")
    )
    rows = []
    for approval in pending[:QUEUE_SCAN]:
        levels = engine.reviewer_levels(user, approval, group_names) if is_reviewer else set()
        mine = approval.level in levels
        if form.cleaned_data.get("mine") and not mine:
            continue
        rows.append(
            {
                "approval": approval,
                "mine": mine,
                "may_decide": is_admin or engine.levels_may_decide(levels, approval),
                "overdue": approval.level_due_at <= now,
                "due_soon": approval.level_due_at <= now + DUE_SOON,
                "countdown": countdown(approval.level_due_at, approval.level_started_at, now),
            }
        )
    query = form.query()
    return {
        "form": form,
        "rows": rows[:QUEUE_LIMIT],
        "truncated": len(rows) > QUEUE_LIMIT,
        "summary": {
            "pending": len(rows),
            "due_soon": sum(row["due_soon"] for row in rows),
            "overdue": sum(row["overdue"] for row in rows),
            "escalated": sum(row["approval"].level > 1 for row in rows),
            "mine": sum(row["mine"] for row in rows),
        },
        "live_url": reverse("approval-queue") + (f"?{query}" if query else ""),
        "is_reviewer": is_reviewer,
        "now": now,
    }


def _pending_agent_names(chosen: str | None) -> list[str]:
    names = list(
        ApprovalRequest.objects.pending()
        .order_by("agent__name")
        .values_list("agent__name", flat=True)
        .distinct()
    )
    if chosen and chosen not in names:
        names.append(chosen)
    return names


# --- One request -------------------------------------------------------------------------------


def _get_approval(pk: int) -> ApprovalRequest:
    return get_object_or_404(
        ApprovalRequest.objects.select_related("agent", "agent__owner", "project", "decided_by"),
        pk=pk,
    )


@require_GET
@role_required(VIEWER)
def detail(request, pk: int):
    """One request: what the agent wants, why, what led here, what happened, and the decision.

    The live element (#approval-live) re-fetches the same address and gets only itself.
    """
    approval = _get_approval(pk)
    if request.htmx and request.htmx.trigger == LIVE_REQUEST:
        response = render(request, "approvals/_request_live.html", _live_context(approval))
    else:
        if approval.is_pending and has_role(request.user, REVIEWER):
            # The first view starts this reviewer's review clock (rubber-stamp check).
            engine.record_view(approval, request.user)
        response = _render_detail(request, approval)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
@role_required(REVIEWER)
def decide(request, pk: int):
    """Approve, approve with edited arguments, or reject (with a comment).

    Refusals render the request page again with the engine's message and its status: 400 for
    bad input, 403 for a reviewer who may not decide at this level, 409 when someone else
    decided first or the request expired meanwhile.
    """
    approval = _get_approval(pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _render_detail(request, approval, form=form, error=form.first_error, status=400)
    data = form.cleaned_data
    first_view = engine.first_view_at(approval, request.user)
    review_seconds = (timezone.now() - first_view).total_seconds() if first_view else None
    try:
        outcome = engine.do_decide(
            approval.pk,
            request.user,
            data["decision"],
            comment=data["comment"],
            edited_arguments=data["edited_arguments"],
            seen_sha256=data["seen_sha256"],
            review_seconds=review_seconds,
        )
    except engine.ApprovalError as error:
        return _render_detail(
            request, _get_approval(pk), form=form, error=str(error), status=error.status
        )
    messages.success(request, outcome.message)
    return redirect("approval-detail", pk=approval.pk)


def _render_detail(request, approval, *, form=None, error: str = "", status: int = 200):
    user = request.user
    allowed, why = engine.may_decide(user, approval)
    owner_blocked = (
        approval.agent.owner_id is not None
        and approval.agent.owner_id == user.pk
        and not approval.policy_snapshot.get("owner_may_approve")
    )
    if form is None:
        form = DecisionForm(
            initial={
                "seen_sha256": approval.arguments_sha256,
                "arguments": pretty_json(approval.arguments),
            }
        )
    decisions = approval.allowed_decisions
    context = {
        "approval": approval,
        "form": form,
        "error": error,
        "status_code": status,
        "can_review": has_role(user, REVIEWER),
        "may_decide": allowed and approval.is_pending,
        "why_not": why,
        "owner_blocked": owner_blocked,
        "may_approve": Decision.APPROVE in decisions and not owner_blocked,
        "may_edit": Decision.APPROVE_EDITED in decisions and not owner_blocked,
        "editor_open": form.is_bound and form.data.get("decision") == Decision.APPROVE_EDITED,
        "reject_open": form.is_bound and form.data.get("decision") == Decision.REJECT,
        "trace": _trace(approval),
        "history": _agent_history(approval),
        "incident_url": incident_url(approval),
        **_neighbours(approval),
        **_live_context(approval),
    }
    return render(request, "approvals/detail.html", context, status=status)


def incident_url(approval: ApprovalRequest) -> str:
    # The incidents app's stable address (DESIGN.md); its form reads these two parameters.
    return "/incidents/new/?" + urlencode({"approval": approval.pk, "agent": approval.agent.name})


def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _flatten(value, prefix: str = "") -> dict[str, str]:
    """Leaves of a JSON object by dotted path (lists are compared whole), as JSON text."""
    if isinstance(value, dict) and value:
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix or "(whole)": json.dumps(value, ensure_ascii=False, sort_keys=True)}


def arguments_diff(before, after) -> list[dict]:
    """What an edit changed, path by path: [{path, kind: changed|added|removed, before, after}].

    static/approvals/approvals.js computes the same list in the browser while a reviewer edits.
    """
    old, new = _flatten(before), _flatten(after)
    changes = []
    for path in list(old) + [p for p in new if p not in old]:
        if path not in new:
            changes.append({"path": path, "kind": "removed", "before": old[path], "after": ""})
        elif path not in old:
            changes.append({"path": path, "kind": "added", "before": "", "after": new[path]})
        elif old[path] != new[path]:
            changes.append(
                {"path": path, "kind": "changed", "before": old[path], "after": new[path]}
            )
    return changes


def _live_context(approval: ApprovalRequest) -> dict:
    """The part of the request page that changes while it is open: status, levels, votes and
    the event log. The full page and the live re-fetch render it from here alike."""
    events = list(approval.events.select_related("actor").order_by("at", "id"))
    votes = list(approval.votes.select_related("reviewer").order_by("created_at", "id"))
    now = timezone.now()
    return {
        "approval": approval,
        "arguments_json": pretty_json(approval.arguments),
        "effective_json": pretty_json(approval.effective_arguments),
        "changes": arguments_diff(approval.arguments, approval.effective_arguments)
        if approval.was_edited
        else [],
        "timeline": timeline(events),
        "levels": _levels(approval, events),
        "votes": votes,
        "approvals_so_far": sum(vote.decision != Decision.REJECT for vote in votes),
        "countdown": countdown(approval.level_due_at, approval.level_started_at, now),
        "now": now,
    }


def _levels(approval: ApprovalRequest, events: list[ApprovalEvent]) -> list[dict]:
    """The chain's levels with when each was reached and left (the escalation history)."""
    numbers = [level["number"] for level in approval.chain_snapshot.get("levels", [])]
    reached = {numbers[0] if numbers else approval.level: approval.created_at}
    left = {}
    for event in events:
        if event.kind == ApprovalEvent.Kind.ESCALATED:
            reached[event.details.get("to", event.level)] = event.at
            left[event.details.get("from")] = event.at
    levels = []
    for level in approval.chain_snapshot.get("levels", []):
        number = level["number"]
        who = level.get("group") or ", ".join(level.get("reviewers", []))
        if number == approval.level and approval.is_pending:
            state = "current"
        elif number in left:
            state = "escalated"
        elif number == approval.level:
            state = "final"
        else:
            state = "not reached"
        levels.append(
            {
                "number": number,
                "who": who or "anyone with the reviewer role",
                "budget": budget_text(level.get("seconds", 0)),
                "state": state,
                "reached_at": reached.get(number),
                "left_at": left.get(number),
            }
        )
    return levels


EVENT_TEXT = {
    ApprovalEvent.Kind.CREATED: "Requested by the agent",
    ApprovalEvent.Kind.REJECTED_AT_ONCE: "Rejected at once",
    ApprovalEvent.Kind.VIEWED: "Opened",
    ApprovalEvent.Kind.VOTED: "Voted",
    ApprovalEvent.Kind.DECIDED: "Decided",
    ApprovalEvent.Kind.REMINDED: "Reminder due",
    ApprovalEvent.Kind.ESCALATED: "Escalated",
    ApprovalEvent.Kind.EXPIRED: "Expired — a denial",
    ApprovalEvent.Kind.CANCELLED: "Cancelled by the agent",
    ApprovalEvent.Kind.LATE_DECISION_IGNORED: "Late decision recorded and ignored",
    ApprovalEvent.Kind.NOTIFIED: "Reviewers notified",
    ApprovalEvent.Kind.FROZEN: "Frozen",
}


def timeline(events: list[ApprovalEvent]) -> list[dict]:
    """The event log for people: one line per event, a person's repeated views folded into
    their first (with a count)."""
    lines: list[dict] = []
    first_view: dict[int | None, dict] = {}
    for event in events:
        details = event.details or {}
        if event.kind == ApprovalEvent.Kind.VIEWED:
            seen = first_view.get(event.actor_id)
            if seen is not None:
                seen["views"] += 1
                continue
        line = {
            "kind": event.kind,
            "at": event.at,
            "actor": event.actor.get_username() if event.actor_id else "",
            "level": event.level,
            "text": EVENT_TEXT.get(event.kind, event.kind),
            "note": _event_note(event.kind, details),
            "views": 1,
        }
        if event.kind == ApprovalEvent.Kind.VIEWED:
            first_view[event.actor_id] = line
        lines.append(line)
    return lines


def _event_note(kind: str, details: dict) -> str:
    if kind == ApprovalEvent.Kind.CREATED:
        return f"policy: {details.get('policy', '')}"
    if kind in (ApprovalEvent.Kind.VOTED, ApprovalEvent.Kind.DECIDED):
        decision = Decision(details["decision"]).label.lower() if details.get("decision") else ""
        comment = details.get("comment", "")
        return f"{decision}: {comment}" if comment else decision
    if kind == ApprovalEvent.Kind.ESCALATED:
        return f"L{details.get('from')} → L{details.get('to')}"
    if kind == ApprovalEvent.Kind.LATE_DECISION_IGNORED:
        return f"{details.get('decision', '')} on a request already {details.get('status', '')}"
    if kind == ApprovalEvent.Kind.NOTIFIED:
        channels = []
        if details.get("webhook"):
            channels.append("webhook")
        if details.get("email"):
            channels.append("email to " + ", ".join(details["email"]))
        why = details.get("why", "")
        return why + (f" ({', '.join(channels)})" if channels else " (no webhook or email set)")
    if kind in (ApprovalEvent.Kind.REJECTED_AT_ONCE, ApprovalEvent.Kind.FROZEN):
        return details.get("reason", "")
    return ""


def _trace(approval: ApprovalRequest) -> dict | None:
    """The run that led to the request and its last steps, newest last."""
    if not approval.trace_id:
        return None
    run = (
        Run.objects.filter(project_id=approval.project_id, trace_id=approval.trace_id)
        .only("id", "trace_id", "name", "status", "span_count", "started_at")
        .first()
    )
    if run is None:
        return {"run": None, "steps": []}
    steps = list(
        Span.objects.filter(run=run)
        .order_by("-started_at", "-id")
        .values("span_id", "name", "kind", "tool_name", "duration_ms", "status", "error_type")[
            :TRACE_STEPS
        ]
    )
    steps.reverse()
    for step in steps:
        step["duration"] = format_duration(step["duration_ms"])
        step["is_request"] = bool(approval.span_id) and step["span_id"] == approval.span_id
    return {"run": run, "steps": steps}


def _agent_history(approval: ApprovalRequest) -> dict:
    """How the agent's last requests went: the approve rate and the latest rejections."""
    recent = list(
        ApprovalRequest.objects.filter(agent_id=approval.agent_id)
        .exclude(pk=approval.pk)
        .select_related("decided_by")
        .only(
            "id",
            "action",
            "status",
            "decision",
            "comment",
            "created_at",
            "decided_at",
            "amount",
            "currency",
            "decided_by__username",
        )  # fmt: skip
        .order_by("-created_at", "-id")[:AGENT_HISTORY]
    )
    Status = ApprovalRequest.Status
    counts = {status: sum(r.status == status for r in recent) for status in Status.values}
    closed = counts[Status.APPROVED] + counts[Status.REJECTED] + counts[Status.EXPIRED]
    return {
        "count": len(recent),
        "counts": counts,
        "approve_rate": counts[Status.APPROVED] / closed if closed else None,
        "edited": sum(r.decision == Decision.APPROVE_EDITED for r in recent),
        "rejections": [r for r in recent if r.status in (Status.REJECTED, Status.EXPIRED)][
            :RECENT_REJECTIONS
        ],
    }


def _neighbours(approval: ApprovalRequest) -> dict:
    """The pending requests before and after this one in the queue (j/k on the page)."""
    pending = ApprovalRequest.objects.pending().exclude(pk=approval.pk)
    if not approval.is_pending:
        first = pending.order_by("level_due_at", "id").values_list("pk", flat=True).first()
        return {"previous_pk": None, "next_pk": first}
    due, pk = approval.level_due_at, approval.pk
    later = Q(level_due_at__gt=due) | Q(level_due_at=due, pk__gt=pk)
    return {
        "previous_pk": pending.exclude(later)
        .order_by("-level_due_at", "-id")
        .values_list("pk", flat=True)
        .first(),
        "next_pk": pending.filter(later)
        .order_by("level_due_at", "id")
        .values_list("pk", flat=True)
        .first(),
    }


# --- Queue health ------------------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def health(request):
    form = HealthWindowForm(request.GET)
    stats = queue_health.queue_health(form.days)
    return render(
        request,
        "approvals/health.html",
        {
            "form": form,
            "days": form.days,
            "window": form.key,
            "health": stats,
            "figure_scripts": charts.figure_scripts(queue_health.figures(stats)),
            "thresholds": {
                "votes": queue_health.RUBBER_STAMP_MIN_VOTES,
                "rate": queue_health.RUBBER_STAMP_APPROVE_RATE,
                "seconds": queue_health.RUBBER_STAMP_MEDIAN_SECONDS,
            },
        },
    )


# --- CSV export --------------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "id", "created", "decided", "status", "decision", "decided_by", "level", "escalations",
    "agent", "action", "amount", "currency", "risk_tier", "stated_risk", "policy",
    "arguments_sha256", "edited", "review_seconds", "comment",
]  # fmt: skip


@require_GET
@role_required(VIEWER)
def decisions_csv(request):
    """Every request closed in the last ?days= days (30 by default) with its context: labelled
    data for calibrating policies. Streamed, oldest first."""
    form = ExportForm(request.GET)
    days = (form.cleaned_data.get("days") if form.is_valid() else None) or EXPORT_DAYS
    since = timezone.now() - timedelta(days=days)
    escalations = (
        ApprovalEvent.objects.filter(request=OuterRef("pk"), kind=ApprovalEvent.Kind.ESCALATED)
        .order_by()
        .values("request")
        .annotate(n=Count("id"))
        .values("n")
    )
    deciding_vote = ApprovalVote.objects.filter(
        request=OuterRef("pk"), reviewer=OuterRef("decided_by")
    ).values("review_seconds")[:1]
    rows = (
        ApprovalRequest.objects.filter(decided_at__gte=since)
        .select_related("agent", "decided_by")
        .only(
            "id",
            "created_at",
            "decided_at",
            "status",
            "decision",
            "level",
            "action",
            "amount",
            "currency",
            "risk_tier",
            "stated_risk",
            "arguments_sha256",
            "effective_sha256",
            "comment",
            "agent__name",
            "decided_by__username",
        )  # fmt: skip
        .annotate(
            escalations=Coalesce(Subquery(escalations), Value(0), output_field=IntegerField()),
            review_seconds=Subquery(deciding_vote),
            policy_name=KT("policy_snapshot__name"),
        )
        .order_by("decided_at", "id")
    )
    writer = csv.writer(Echo())

    def lines():
        yield writer.writerow(EXPORT_COLUMNS)
        for r in rows.iterator(chunk_size=500):
            yield writer.writerow(
                [
                    r.pk,
                    r.created_at.isoformat(),
                    r.decided_at.isoformat(),
                    r.status,
                    r.decision,
                    csv_cell(r.decided_by.get_username() if r.decided_by_id else ""),
                    r.level,
                    r.escalations,
                    csv_cell(r.agent.name),
                    csv_cell(r.action),
                    "" if r.amount is None else format(r.amount.normalize(), "f"),
                    r.currency,
                    r.risk_tier,
                    r.stated_risk,
                    csv_cell(r.policy_name or ""),
                    r.arguments_sha256,
                    "yes" if r.was_edited else "no",
                    "" if r.review_seconds is None else f"{r.review_seconds:.1f}",
                    csv_cell(r.comment),
                ]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    filename = f"approval-decisions-{timezone.localdate():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Policies ----------------------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def policy_list(request):
    policies = list(Policy.objects.select_related("chain", "project"))
    for policy in policies:
        policy.condition_lines = [
            f"{c.get('field')} {c.get('op')} {json.dumps(c.get('value'), ensure_ascii=False)}"
            for c in policy.conditions
            if isinstance(c, dict)
        ]
        policy.decision_labels = [
            Decision(value).label.lower() for value in (policy.allowed_decisions or Decision.values)
        ]
    chains = list(
        EscalationChain.objects.prefetch_related(_levels_prefetch(), "policies").order_by("name")
    )
    for chain in chains:
        for level in chain.levels.all():
            level.budget_display = budget_text(level.time_budget.total_seconds())
    return render(request, "approvals/policies.html", {"policies": policies, "chains": chains})


def _levels_prefetch():
    return Prefetch(
        "levels",
        queryset=EscalationLevel.objects.select_related("reviewer_group")
        .prefetch_related("reviewers")
        .order_by("number"),
    )


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def policy_edit(request, pk: int | None = None):
    """Create (no pk) or edit a policy. Requests already in flight keep their snapshot."""
    policy = get_object_or_404(Policy, pk=pk) if pk else None
    form = PolicyForm(request.POST or None, instance=policy)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(
            request,
            f"Policy “{saved.name}” {'saved' if policy else 'created'}. "
            "Requests already waiting keep the policy they were created under.",
        )
        return redirect("approval-policies")
    status = 400 if form.is_bound else 200
    return render(
        request, "approvals/policy_form.html", {"form": form, "policy": policy}, status=status
    )
