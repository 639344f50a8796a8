"""Interventions: pause, resume or stop an agent, or override its knobs, with a reason.

Every `do_*` function is the one place its mutation happens — views, the API, budget breaches
and incidents all call it — and fans out the same way: the agent row (a conditional update on
its current state), an append-only Intervention audit row, and a live refresh of the fleet and
the agent's page once the transaction commits. Agents learn the result at
GET /api/v1/agents/<name>/control (`control_state`).

`user` is the person acting; it must hold the operator role (admins do). None means the
cockpit itself acted, e.g. a budget breach pausing an agent.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from cockpit import realtime
from cockpit.models import AgentControl, AlertEvent, Intervention
from cockpit.roles import OPERATOR, has_role
from traces.models import Agent

# The page parts that re-fetch themselves (they carry hx-get) when an agent's state changes.
FLEET_REFRESH_TARGET = "fleet-live"
AGENT_REFRESH_TARGET = "agent-control"

# Which states each action may start from.
ALLOWED_FROM = {
    Intervention.Action.PAUSE: {Agent.State.ACTIVE},
    Intervention.Action.RESUME: {Agent.State.PAUSED, Agent.State.STOPPED},
    Intervention.Action.STOP: {Agent.State.ACTIVE, Agent.State.PAUSED},
}
RESULTING_STATE = {
    Intervention.Action.PAUSE: Agent.State.PAUSED,
    Intervention.Action.RESUME: Agent.State.ACTIVE,
    Intervention.Action.STOP: Agent.State.STOPPED,
}


class InterventionError(Exception):
    """The intervention does not apply to the agent as it is now (e.g. pausing a paused one)."""


def can_intervene(user) -> bool:
    return has_role(user, OPERATOR)


def do_pause_agent(agent: Agent, user, reason: str, *, alert_event: AlertEvent | None = None):
    """Pause an active agent: it stops starting runs until resumed. Returns the Intervention."""
    return _change_state(agent, user, Intervention.Action.PAUSE, reason, alert_event)


def do_resume_agent(agent: Agent, user, reason: str):
    """Make a paused or stopped agent active again. Returns the Intervention."""
    return _change_state(agent, user, Intervention.Action.RESUME, reason, None)


def do_stop_agent(agent: Agent, user, reason: str, *, alert_event: AlertEvent | None = None):
    """Stop an agent: it abandons the runs it is in and starts none. Returns the Intervention."""
    return _change_state(agent, user, Intervention.Action.STOP, reason, alert_event)


def do_set_overrides(agent: Agent, user, reason: str, **overrides) -> Intervention:
    """Set (or, with None / "", clear) overrides: max_cost_per_run_usd, downgrade_model,
    max_steps. Keys not given keep their value. Returns the Intervention.

    Raises ValidationError naming the field for an unknown key or a bad value.
    """
    reason = _check(user, reason)
    values = clean_overrides(overrides)
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        control, _ = AgentControl.objects.select_for_update().get_or_create(agent=locked)
        before = control.overrides()
        for name, value in values.items():
            setattr(control, name, value)
        control.updated_at = timezone.now()
        control.save()
        intervention = Intervention.objects.create(
            agent=locked,
            user=user,
            action=Intervention.Action.OVERRIDE,
            reason=reason,
            before={"overrides": before},
            after={"overrides": control.overrides()},
        )
        _broadcast(locked)
    return intervention


def clean_overrides(overrides: dict) -> dict:
    """Validate override values: {field: value or None}; raises ValidationError per field."""
    unknown = set(overrides) - set(AgentControl.OVERRIDE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Not an override."))
    cleaned, errors = {}, {}
    for name, raw in overrides.items():
        if raw is None or raw == "":
            cleaned[name] = "" if name == "downgrade_model" else None
        elif name == "max_cost_per_run_usd":
            try:
                value = Decimal(str(raw))
            except InvalidOperation:
                errors[name] = "Must be a number of US dollars, e.g. 0.50."
                continue
            if not value.is_finite() or value <= 0 or value >= Decimal("1e8"):
                errors[name] = "Must be above 0 and below 100,000,000."
                continue
            cleaned[name] = value.quantize(Decimal("0.0001"))
        elif name == "max_steps":
            try:
                value = int(raw)
            except (TypeError, ValueError):
                errors[name] = "Must be a whole number."
                continue
            if not 1 <= value <= 10_000:
                errors[name] = "Must be between 1 and 10000."
                continue
            cleaned[name] = value
        else:
            value = str(raw).strip()
            if len(value) > 200:
                errors[name] = "At most 200 characters."
                continue
            cleaned[name] = value
    if errors:
        raise ValidationError(errors)
    return cleaned


def control_state(agent: Agent) -> dict:
    """What the agent reads at its control endpoint: {state, reason, overrides}."""
    try:
        overrides = agent.control.overrides()
    except AgentControl.DoesNotExist:
        overrides = {}
    return {"state": agent.state, "reason": agent.state_reason, "overrides": overrides}


def agent_interventions(agent: Agent, limit: int = 50):
    """The agent's audit trail, newest first, with the people loaded (one query)."""
    return Intervention.objects.for_agent(agent).select_related("user")[:limit]


def _change_state(agent, user, action, reason, alert_event) -> Intervention:
    reason = _check(user, reason)
    new_state = RESULTING_STATE[action]
    with transaction.atomic():
        # Lock the row so the before/after pair in the audit is exactly what happened.
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        if locked.state not in ALLOWED_FROM[action]:
            raise InterventionError(f"{locked.name} is {locked.state}: it cannot be {action}d.")
        before = {"state": locked.state, "reason": locked.state_reason}
        after = {"state": new_state, "reason": "" if new_state == Agent.State.ACTIVE else reason}
        Agent.objects.filter(pk=locked.pk).update(
            state=after["state"], state_reason=after["reason"][:500]
        )
        intervention = Intervention.objects.create(
            agent=locked,
            user=user,
            action=action,
            reason=reason,
            before=before,
            after=after,
            alert_event=alert_event,
        )
        _broadcast(locked)
    agent.state, agent.state_reason = after["state"], after["reason"][:500]
    return intervention


def _check(user, reason: str) -> str:
    if user is not None and not can_intervene(user):
        raise PermissionDenied("Intervening on an agent needs the operator role.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why: a reason is required."})
    if len(reason) > 1000:
        raise ValidationError({"reason": "At most 1000 characters."})
    return reason


def _broadcast(agent: Agent) -> None:
    realtime.send_refresh("fleet", FLEET_REFRESH_TARGET)
    realtime.send_refresh(f"agent.{agent.pk}", AGENT_REFRESH_TARGET)
