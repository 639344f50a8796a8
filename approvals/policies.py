"""Matching a request to its policy, and the default for a request no policy matches.

Conditions are data, not code: [{"field": "amount", "op": ">", "value": 1000}]. A field is
"amount", "currency" or an argument name, with dots reaching into nested objects
("customer.tier"). A condition on a field the request lacks does not hold.
"""

from __future__ import annotations

import operator
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.db.models import Q

from approvals.models import RISK_ORDER, Decision, EscalationChain, EscalationLevel, Policy, Risk

OPERATORS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda value, options: value in options,
    "contains": lambda value, part: str(part).lower() in str(value).lower(),
}
DEFAULT_CHAIN_NAME = "default"
# The chain a request gets when no policy matches and no chain named "default" exists yet:
# four levels of 15 minutes, any reviewer, reminder at half time.
DEFAULT_LEVEL_BUDGET = timedelta(minutes=15)


def check_conditions(conditions) -> None:
    """Raise ValueError saying what is wrong with a policy's conditions."""
    if not isinstance(conditions, list):
        raise ValueError('A list of {"field", "op", "value"} objects.')
    for number, condition in enumerate(conditions, start=1):
        if not isinstance(condition, dict) or set(condition) != {"field", "op", "value"}:
            raise ValueError(f'Condition {number}: needs exactly "field", "op" and "value".')
        if condition["op"] not in OPERATORS:
            raise ValueError(f"Condition {number}: op must be one of {', '.join(OPERATORS)}.")
        if not isinstance(condition["field"], str) or not condition["field"]:
            raise ValueError(f"Condition {number}: field must be a name.")
        if condition["op"] == "in" and not isinstance(condition["value"], list):
            raise ValueError(f'Condition {number}: "in" needs a list value.')


def _field(request_fields: dict, path: str):
    if path in ("amount", "currency"):
        return request_fields.get(path)
    value = request_fields.get("arguments")
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _comparable(value, expected):
    """Numbers compare as numbers (an amount is a Decimal, a threshold a JSON number)."""
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        try:
            return Decimal(str(value)), Decimal(str(expected))
        except (InvalidOperation, ValueError):
            return None
    return value, expected


def holds(condition: dict, request_fields: dict) -> bool:
    value = _field(request_fields, condition["field"])
    if value is None:
        return False
    if condition["op"] in ("in", "contains"):
        return bool(OPERATORS[condition["op"]](value, condition["value"]))
    pair = _comparable(value, condition["value"])
    if pair is None:
        return False
    try:
        return bool(OPERATORS[condition["op"]](*pair))
    except TypeError:
        return False


def matching_policy(project, agent_name: str, action: str, request_fields: dict) -> Policy | None:
    """The first enabled policy (by priority) whose agent, action and conditions all match."""
    candidates = (
        Policy.objects.filter(enabled=True)
        .filter(Q(project__isnull=True) | Q(project=project))
        .filter(Q(agent_name="") | Q(agent_name=agent_name))
        .filter(Q(action="") | Q(action=action))
        .select_related("chain")
    )
    for policy in candidates:
        if all(holds(condition, request_fields) for condition in policy.conditions):
            return policy
    return None


def default_snapshots(stated_risk: str) -> tuple[dict, dict]:
    """(policy snapshot, chain snapshot) for a request no policy matches.

    The documented default: the agent's stated risk but never below high (an unknown action is
    not presumed safe), one approval from anyone with the reviewer role, every decision allowed,
    the owner may not approve, expiry denies; the chain named "default" (created on first use
    as four 15-minute levels).
    """
    tier = stated_risk if RISK_ORDER.get(stated_risk, -1) > RISK_ORDER[Risk.HIGH] else Risk.HIGH
    policy = {
        "id": None,
        "name": "default (no policy matched)",
        "risk_tier": str(tier),
        "allowed_decisions": list(Decision.values),
        "approvals_required": 1,
        "owner_may_approve": False,
        "on_expiry": Policy.Expiry.DENY.value,
        "conditions": [],
    }
    return policy, default_chain().snapshot()


def default_chain() -> EscalationChain:
    chain = EscalationChain.objects.filter(name=DEFAULT_CHAIN_NAME).first()
    if chain is not None:
        return chain
    with transaction.atomic():
        chain, created = EscalationChain.objects.get_or_create(
            name=DEFAULT_CHAIN_NAME,
            defaults={"description": "Used when no policy matches a request."},
        )
        if created:
            EscalationLevel.objects.bulk_create(
                EscalationLevel(chain=chain, number=n, time_budget=DEFAULT_LEVEL_BUDGET)
                for n in (1, 2, 3, 4)
            )
    return chain
