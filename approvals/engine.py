"""The approval engine: create, decide, cancel, freeze; the sweeper and its auditor.

Every mutation is one do_* function that views, the API and tasks all call. Each runs in one
transaction on a locked request row, appends to the event log, and after commit wakes the
agent's long-poll, refreshes the live pages and sends notifications. Deciding is conditional on
the request still being pending, so of two racing decisions exactly one wins.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import django.dispatch
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from approvals import waiting
from approvals.models import (
    RISK_ORDER,
    ApprovalEvent,
    ApprovalRequest,
    ApprovalVote,
    Decision,
    Policy,
    Risk,
    arguments_sha256,
)
from approvals.policies import default_snapshots, matching_policy
from cockpit import realtime, webhooks
from cockpit.interventions import FLEET_REFRESH_TARGET
from cockpit.roles import ADMIN, REVIEWER, has_role
from traces.models import Agent

logger = logging.getLogger(__name__)

# Sent after commit whenever a request changes: approval=ApprovalRequest, event=kind.
approval_changed = django.dispatch.Signal()

QUEUE_TOPIC = "approvals"
QUEUE_TARGET = "approval-queue-live"
REQUEST_TARGET = "approval-live"
# The sweeper claims at most this many due requests per pass (the rest wait for the next one).
SWEEP_BATCH = 500
# The auditor flags a pending request whose level deadline passed this long ago: the sweeper
# runs every few seconds, so such a request means the engine itself is not running.
OVERDUE_GRACE = timedelta(seconds=60)
OVERDUE_ALERT_KEY = "approvals:overdue"


class ApprovalError(Exception):
    """Refused: status is the HTTP status the API answers, field names the input at fault."""

    def __init__(self, message: str, *, status: int = 400, field: str = ""):
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Outcome:
    request: ApprovalRequest
    decided: bool  # the request left pending with this call
    message: str


# --- Creating -------------------------------------------------------------------------------


def do_create_request(project, data: dict, *, now: datetime | None = None):
    """Create the request `data` describes (validated by the API serializer), or return the one
    already created under its idempotency key. Returns (request, created).

    A replay with other arguments is a 409. A paused or stopped agent's request is stored as
    rejected at once, with the agent's state as the reason.
    """
    now = now or timezone.now()
    sha = arguments_sha256(data["arguments"])
    existing = _existing(project, data, sha)
    if existing is not None:
        return existing, False
    agent, _ = Agent.objects.get_or_create(project=project, name=data["agent"])
    fields = {"amount": data.get("amount"), "currency": data.get("currency", ""),
              "arguments": data["arguments"]}  # fmt: skip
    policy = matching_policy(project, agent.name, data["action"], fields)
    if policy is not None:
        policy_snapshot, chain_snapshot = policy.snapshot(), policy.chain.snapshot()
    else:
        policy_snapshot, chain_snapshot = default_snapshots(data.get("risk", ""))
    levels = chain_snapshot["levels"] or [{"number": 1, "seconds": 900, "remind_at_fraction": 0}]
    first = levels[0]
    level_due = now + timedelta(seconds=first["seconds"])
    request = ApprovalRequest(
        project=project,
        agent=agent,
        idempotency_key=data["idempotency_key"],
        action=data["action"],
        arguments=data["arguments"],
        arguments_sha256=sha,
        effective_arguments=data["arguments"],
        effective_sha256=sha,
        summary=data.get("summary", ""),
        rationale=data.get("rationale", ""),
        stated_risk=data.get("risk", ""),
        risk_tier=policy_snapshot["risk_tier"],
        amount=data.get("amount"),
        currency=data.get("currency", ""),
        trace_id=data.get("trace_id", ""),
        span_id=data.get("span_id", ""),
        callback_url=data.get("callback_url", ""),
        callback_secret=secrets.token_hex(16) if data.get("callback_url") else "",
        policy_snapshot=policy_snapshot,
        chain_snapshot={**chain_snapshot, "levels": levels},
        level=first["number"],
        level_started_at=now,
        level_due_at=level_due,
        expires_at=now + timedelta(seconds=sum(level["seconds"] for level in levels)),
        created_at=now,
    )
    request.risk_summary = risk_summary(request, policy)
    _schedule(request, first, now)
    paused = agent.state != Agent.State.ACTIVE
    if paused:
        reason = agent.state_reason or "no reason given"
        request.status = ApprovalRequest.Status.REJECTED
        request.decided_at = now
        request.comment = f"The agent is {agent.state}: {reason}"
    try:
        with transaction.atomic():
            request.save()
            _log(
                request,
                ApprovalEvent.Kind.CREATED,
                now=now,
                details={"policy": policy_snapshot["name"]},
            )
            if paused:
                _log(request, ApprovalEvent.Kind.REJECTED_AT_ONCE, now=now,
                     details={"reason": request.comment})  # fmt: skip
                _after_change(request, "rejected")
            else:
                _notify_level(request, "requested")
                _after_change(request, "created")
    except IntegrityError:
        # The same key created concurrently: the other insert won; answer as a replay.
        existing = _existing(project, data, sha)
        if existing is None:
            raise
        return existing, False
    return request, True


def _existing(project, data: dict, sha: str) -> ApprovalRequest | None:
    existing = ApprovalRequest.objects.filter(
        project=project, idempotency_key=data["idempotency_key"]
    ).first()
    if existing is not None and (
        existing.arguments_sha256 != sha
        or existing.action != data["action"]
        or existing.agent.name != data["agent"]
    ):
        raise ApprovalError(
            "This idempotency_key was used for a different request (agent, action or arguments "
            "differ). Use a new key for a new request.",
            status=409,
            field="idempotency_key",
        )
    return existing


def risk_summary(request: ApprovalRequest, policy: Policy | None) -> str:
    """The platform's own view of the risk, kept apart from the agent's rationale."""
    parts = [f"Risk tier {request.risk_tier}"]
    parts.append(f"by policy “{policy.name}”" if policy else "by default: no policy matched")
    if request.stated_risk and RISK_ORDER.get(request.stated_risk, 0) < RISK_ORDER.get(
        request.risk_tier, 0
    ):
        parts.append(f"(the agent said {request.stated_risk})")
    summary = " ".join(parts) + "."
    if request.amount is not None:
        summary += f" Amount {request.amount_display}."
    required = request.policy_snapshot.get("approvals_required", 1)
    if required > 1:
        summary += f" Needs {required} distinct approvals."
    if not request.policy_snapshot.get("owner_may_approve"):
        summary += " The agent's owner may not approve."
    if request.risk_tier in (Risk.HIGH, Risk.CRITICAL):
        summary += " Expiry is a denial."
    return summary


def _schedule(request: ApprovalRequest, level: dict, start: datetime) -> None:
    """Set the level's deadline, its reminder and the sweeper's next look."""
    budget = timedelta(seconds=level["seconds"])
    request.level_started_at = start
    request.level_due_at = start + budget
    fraction = level.get("remind_at_fraction") or 0
    request.remind_at = start + budget * fraction if fraction else None
    request.next_action_at = request.remind_at or request.level_due_at


# --- Deciding -------------------------------------------------------------------------------


def reviewer_levels(user, request: ApprovalRequest, group_names=None) -> set[int]:
    """The levels of the request's chain at which the user is a reviewer. group_names: the
    user's groups, when read once for many requests (the queue)."""
    if not has_role(user, REVIEWER):
        return set()
    if group_names is None:
        group_names = set(user.groups.values_list("name", flat=True))
    found = set()
    for level in request.chain_snapshot.get("levels", []):
        named = level.get("group") or level.get("reviewers")
        if (
            not named
            or (level.get("group") and level["group"] in group_names)
            or user.get_username() in level.get("reviewers", [])
        ):
            found.add(level["number"])
    return found


def levels_may_decide(levels: set[int], request: ApprovalRequest) -> bool:
    """Whether a reviewer at these levels may decide the request at its current level."""
    if not levels:
        return False
    return bool(request.chain_snapshot.get("earlier_levels_may_decide")) or (
        max(levels) >= request.level
    )


def may_decide(user, request: ApprovalRequest) -> tuple[bool, str]:
    """Whether the user may decide the request at its current level, and if not, why."""
    if has_role(user, ADMIN):
        return True, ""
    levels = reviewer_levels(user, request)
    if not levels:
        return False, "You are not a reviewer on this request's escalation chain."
    if not levels_may_decide(levels, request):
        return False, (
            f"The request is at L{request.level}; you review at "
            + ", ".join(f"L{n}" for n in sorted(levels))
            + " and this chain does not let earlier levels decide."
        )
    return True, ""


def do_decide(
    request_id: int,
    user,
    decision: str,
    *,
    comment: str = "",
    edited_arguments=None,
    seen_sha256: str = "",
    review_seconds: float | None = None,
    now: datetime | None = None,
) -> Outcome:
    """A reviewer's decision. Raises ApprovalError (403, 409, 400) when it cannot count."""
    now = now or timezone.now()
    comment = (comment or "").strip()
    if decision not in Decision.values:
        raise ApprovalError(
            f"decision must be one of {', '.join(Decision.values)}.", field="decision"
        )
    if decision == Decision.REJECT and not comment:
        raise ApprovalError("Say why: a rejection needs a comment.", field="comment")
    if decision == Decision.APPROVE_EDITED and not isinstance(edited_arguments, dict):
        raise ApprovalError("Edited arguments must be a JSON object.", field="arguments")
    with transaction.atomic():
        request = (
            ApprovalRequest.objects.select_for_update().select_related("agent").get(pk=request_id)
        )
        if not request.is_pending:
            late = _too_late(request, user, decision, now)
        else:
            return _decide_pending(
                request, user, decision, comment, edited_arguments, seen_sha256,
                review_seconds, now,
            )  # fmt: skip
    # Raised after commit, so the record of the late decision stays.
    raise late


def _decide_pending(
    request, user, decision, comment, edited_arguments, seen_sha256, review_seconds, now
) -> Outcome:
    allowed, why = may_decide(user, request)
    if not allowed:
        raise ApprovalError(why, status=403)
    if (
        request.agent.owner_id == user.pk
        and not request.policy_snapshot.get("owner_may_approve")
        and decision != Decision.REJECT
    ):
        raise ApprovalError(
            "You own this agent: its policy does not let you approve it.", status=403
        )
    if decision not in request.allowed_decisions:
        raise ApprovalError(f"This policy does not allow “{decision}”.", field="decision")
    if seen_sha256 != request.arguments_sha256:
        raise ApprovalError(
            "The arguments you reviewed are not the request's (hash mismatch); reload it.",
            status=409,
            field="arguments_sha256",
        )
    if decision == Decision.APPROVE_EDITED:
        edited_sha = arguments_sha256(edited_arguments)
        if edited_sha == request.arguments_sha256:
            decision, edited_arguments = Decision.APPROVE, None
    try:
        with transaction.atomic():
            ApprovalVote.objects.create(
                request=request,
                reviewer=user,
                decision=decision,
                level=request.level,
                seen_sha256=seen_sha256,
                edited_arguments=edited_arguments if decision == Decision.APPROVE_EDITED else None,
                comment=comment,
                created_at=now,
                review_seconds=review_seconds,
            )
    except IntegrityError:
        raise ApprovalError("You have already voted on this request.", status=409) from None
    _log(request, ApprovalEvent.Kind.VOTED, actor=user, now=now,
         details={"decision": decision, "comment": comment})  # fmt: skip
    if decision != Decision.REJECT:
        approvals = request.votes.exclude(decision=Decision.REJECT).count()
        if approvals < request.approvals_required:
            _after_change(request, "voted")
            return Outcome(request, False, (
                f"Your approval is recorded: {approvals} of {request.approvals_required} "
                "distinct approvals so far."
            ))  # fmt: skip
    return _finish(request, user, decision, comment, edited_arguments, now)


def _finish(request, user, decision, comment, edited_arguments, now) -> Outcome:
    status = (
        ApprovalRequest.Status.REJECTED
        if decision == Decision.REJECT
        else ApprovalRequest.Status.APPROVED
    )
    changes = {"status": status, "decided_at": now, "decided_by": user, "decision": decision,
               "comment": comment}  # fmt: skip
    if decision == Decision.APPROVE_EDITED:
        changes["effective_arguments"] = edited_arguments
        changes["effective_sha256"] = arguments_sha256(edited_arguments)
    # Conditional on pending: the row lock already orders deciders, this keeps it true even
    # for a writer that did not take the lock.
    won = ApprovalRequest.objects.filter(
        pk=request.pk, status=ApprovalRequest.Status.PENDING
    ).update(**changes)
    if not won:
        raise ApprovalError("Someone else decided this request first.", status=409)
    for field, value in changes.items():
        setattr(request, field, value)
    _log(request, ApprovalEvent.Kind.DECIDED, actor=user, now=now,
         details={"decision": decision, "comment": comment,
                  "effective_sha256": request.effective_sha256})  # fmt: skip
    _after_change(request, status)
    return Outcome(request, True, f"Request {status}.")


def _too_late(request: ApprovalRequest, user, decision: str, now) -> ApprovalError:
    """A decision on a request no longer pending: recorded, ignored, and the reviewer told."""
    _log(request, ApprovalEvent.Kind.LATE_DECISION_IGNORED, actor=user, now=now,
         details={"decision": decision, "status": request.status})  # fmt: skip
    if request.status == ApprovalRequest.Status.EXPIRED:
        return ApprovalError(
            "Too late: this request expired (as a denial) before your decision. Your decision "
            "was recorded and ignored.",
            status=409,
        )
    decided_by = f" by {request.decided_by.get_username()}" if request.decided_by_id else ""
    return ApprovalError(
        f"Too late: this request was already {request.status}{decided_by}. Your decision was "
        "recorded and ignored.",
        status=409,
    )


def do_cancel(request: ApprovalRequest, *, now: datetime | None = None) -> ApprovalRequest:
    """The agent withdraws its request (no longer needed)."""
    now = now or timezone.now()
    with transaction.atomic():
        won = ApprovalRequest.objects.filter(
            pk=request.pk, status=ApprovalRequest.Status.PENDING
        ).update(status=ApprovalRequest.Status.CANCELLED, decided_at=now)
        request.refresh_from_db()
        if not won:
            raise ApprovalError(f"This request is already {request.status}.", status=409)
        _log(request, ApprovalEvent.Kind.CANCELLED, now=now)
        _after_change(request, "cancelled")
    return request


def do_freeze_agents(agents, *, reason: str, actor) -> list[ApprovalRequest]:
    """Reject every pending request of these agents with `reason` (e.g. from an incident):
    one UPDATE and one insert of the log rows for all of them."""
    now = timezone.now()
    decided = {"status": ApprovalRequest.Status.REJECTED, "decided_at": now,
               "decided_by": actor, "decision": Decision.REJECT, "comment": reason}  # fmt: skip
    with transaction.atomic():
        frozen = list(
            ApprovalRequest.objects.pending()
            .filter(agent__in=list(agents))
            .select_for_update()
            .order_by("pk")
        )
        ApprovalRequest.objects.filter(pk__in=[r.pk for r in frozen]).update(**decided)
        for request in frozen:
            for field, value in decided.items():
                setattr(request, field, value)
        ApprovalEvent.objects.bulk_create(
            ApprovalEvent(request=request, kind=ApprovalEvent.Kind.FROZEN, actor=actor,
                          level=request.level, at=now, details={"reason": reason})
            for request in frozen
        )  # fmt: skip
        for request in frozen:
            _after_change(request, "rejected")
    return frozen


def record_view(request: ApprovalRequest, user, *, now: datetime | None = None) -> None:
    """A reviewer opened the request (the first view per person starts their review clock)."""
    _log(request, ApprovalEvent.Kind.VIEWED, actor=user, now=now or timezone.now())


def first_view_at(request: ApprovalRequest, user) -> datetime | None:
    return (
        request.events.filter(kind=ApprovalEvent.Kind.VIEWED, actor=user)
        .values_list("at", flat=True)
        .first()
    )


# --- Sweeping -------------------------------------------------------------------------------


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """One pass: remind, escalate or expire the pending requests whose next action is due.

    Rows are claimed with FOR UPDATE SKIP LOCKED and each step is conditional on the level the
    sweeper read, so two sweepers, a restarted worker or a late task act once per level.
    """
    now = now or timezone.now()
    done = {"reminded": 0, "escalated": 0, "expired": 0}
    with transaction.atomic():
        due = (
            ApprovalRequest.objects.pending()
            .filter(next_action_at__lte=now)
            .order_by("next_action_at")
            .select_for_update(skip_locked=connection.features.has_select_for_update_skip_locked)[
                :SWEEP_BATCH
            ]
        )
        for request in due:
            done[_advance(request, now)] += 1
    return done


def _advance(request: ApprovalRequest, now: datetime) -> str:
    if request.level_due_at > now:
        # Only the reminder is due.
        _log(request, ApprovalEvent.Kind.REMINDED, now=now)
        ApprovalRequest.objects.filter(pk=request.pk, level=request.level).update(
            remind_at=None, next_action_at=request.level_due_at
        )
        _notify_level(request, "reminder")
        _after_change(request, "reminded")
        return "reminded"
    numbers = [level["number"] for level in request.chain_snapshot["levels"]]
    later = [n for n in numbers if n > request.level]
    if later:
        previous = request.level
        request.level = later[0]
        _schedule(request, request.level_snapshot(), now)
        ApprovalRequest.objects.filter(pk=request.pk, level=previous).update(
            level=request.level,
            level_started_at=request.level_started_at,
            level_due_at=request.level_due_at,
            remind_at=request.remind_at,
            next_action_at=request.next_action_at,
        )
        _log(request, ApprovalEvent.Kind.ESCALATED, now=now,
             details={"from": previous, "to": request.level})  # fmt: skip
        _notify_level(request, "escalated")
        _after_change(request, "escalated")
        return "escalated"
    ApprovalRequest.objects.filter(pk=request.pk, status=ApprovalRequest.Status.PENDING).update(
        status=ApprovalRequest.Status.EXPIRED, decided_at=now, decision=Decision.REJECT,
        comment="Expired: nobody decided in time. Expiry is a denial.",
    )  # fmt: skip
    request.refresh_from_db()
    _log(request, ApprovalEvent.Kind.EXPIRED, now=now)
    if request.policy_snapshot.get("on_expiry") == Policy.Expiry.DENY_AND_ALERT:
        _raise_alert(request, f"approvals:expired:{request.pk}",
                     f"Approval request #{request.pk} ({request.action}) expired undecided.")  # fmt: skip
    _after_change(request, "expired")
    return "expired"


def audit(*, now: datetime | None = None) -> int:
    """Watch the sweeper: alert while pending requests sit past their deadline unprocessed,
    resolve the alert once none do. Returns how many are overdue."""
    from cockpit.models import AlertEvent

    now = now or timezone.now()
    overdue = ApprovalRequest.objects.pending().filter(level_due_at__lt=now - OVERDUE_GRACE)
    count = overdue.count()
    if count:
        first = overdue.select_related("project").order_by("level_due_at").first()
        _raise_alert(first, OVERDUE_ALERT_KEY,
                     f"{count} approval request(s) past their deadline and not escalated: "
                     "is the sweeper (Celery beat and worker) running?", page=True)  # fmt: skip
    else:
        AlertEvent.objects.firing().filter(key=OVERDUE_ALERT_KEY).update(resolved_at=now)
    return count


def _raise_alert(request: ApprovalRequest, key: str, summary: str, *, page=False) -> None:
    from cockpit.models import AlertEvent

    if AlertEvent.objects.firing().filter(key=key).exists():
        return
    try:
        with transaction.atomic():
            event = AlertEvent.objects.create(
                kind=AlertEvent.Kind.APPROVALS,
                severity=AlertEvent.Severity.PAGE if page else AlertEvent.Severity.TICKET,
                key=key,
                project=request.project,
                agent=request.agent,
                summary=summary,
                details={"approval": request.pk},
            )
    except IntegrityError:
        return  # opened concurrently
    webhooks.notify(event)


# --- After every change ------------------------------------------------------------------------


def _log(request, kind, *, actor=None, now=None, details=None) -> ApprovalEvent:
    return ApprovalEvent.objects.create(
        request=request,
        kind=kind,
        actor=actor,
        level=request.level,
        at=now or timezone.now(),
        details=details or {},
    )


def _after_change(request: ApprovalRequest, event: str) -> None:
    """On commit: wake the agent's long-poll, refresh live pages, call back, signal."""
    realtime.send_refresh(QUEUE_TOPIC, QUEUE_TARGET)
    realtime.send_refresh(f"approval.{request.pk:x}", REQUEST_TARGET)
    final = request.status != ApprovalRequest.Status.PENDING
    if final or event == "created":
        # The fleet tiles count pending requests per agent.
        realtime.send_refresh("fleet", FLEET_REFRESH_TARGET)
    if final:
        transaction.on_commit(lambda: waiting.wake(request.pk))
        if request.callback_url:
            webhooks.queue_delivery(
                request.callback_url,
                request.callback_secret,
                {"approval": decision_payload(request), "event": event},
                topic=f"approval:{request.pk}:{event}",
            )
    transaction.on_commit(
        lambda: approval_changed.send(sender=ApprovalRequest, approval=request, event=event)
    )


def decision_payload(request: ApprovalRequest) -> dict:
    """What an agent learns about its request (the long-poll's body and the callback's)."""
    return {
        "id": request.pk,
        "status": request.status,
        "level": request.level,
        "level_due_at": request.level_due_at,
        "expires_at": request.expires_at,
        "decided_by": request.decided_by.get_username() if request.decided_by_id else None,
        "decided_at": request.decided_at,
        "comment": request.comment,
        "arguments": request.effective_arguments,
        "arguments_sha256": request.effective_sha256,
        "edited": request.was_edited,
    }


def _notify_level(request: ApprovalRequest, why: str) -> None:
    """Tell the current level's targets: Slack-compatible webhook and email, after commit."""
    level = request.level_snapshot()
    if not level:
        return
    headline = {
        "requested": "Approval needed",
        "reminder": "Reminder: approval still needed",
        "escalated": f"Escalated to L{request.level}: approval needed",
    }[why]
    text = (
        f"{headline} — {request.agent.name} wants to {request.action}"
        + (f" ({request.amount_display})" if request.amount is not None else "")
        + f". Risk {request.risk_tier}. Due {request.level_due_at:%Y-%m-%d %H:%M UTC}."
    )
    payload = {
        "text": text,
        "approval": {"id": request.pk, "level": request.level, "why": why,
                     "risk": request.risk_tier, "action": request.action,
                     "agent": request.agent.name, "due_at": request.level_due_at},
    }  # fmt: skip
    if level.get("webhook_url"):
        webhooks.queue_delivery(
            level["webhook_url"], level.get("webhook_secret", ""), payload,
            topic=f"approval:{request.pk}:{why}:L{request.level}",
        )  # fmt: skip
    if level.get("email_to"):
        recipients = list(level["email_to"])
        transaction.on_commit(lambda: _send_email(headline, text, recipients))
    if level.get("webhook_url") or level.get("email_to"):
        _log(request, ApprovalEvent.Kind.NOTIFIED, details={"why": why,
             "webhook": bool(level.get("webhook_url")), "email": level.get("email_to", [])})  # fmt: skip


def _send_email(subject: str, text: str, recipients: list[str]) -> None:
    try:
        send_mail(f"[Agent Cockpit] {subject}", text, None, recipients)
    except Exception:  # noqa: BLE001 - a mail outage must not undo the escalation
        logger.warning("Could not email %s", recipients, exc_info=True)
