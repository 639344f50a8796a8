"""Chains, policies and requests for the engine and API tests (plain functions, no fixtures)."""

from datetime import timedelta
from decimal import Decimal
from itertools import count

from django.contrib.auth.models import Group, User

from approvals.engine import do_create_request
from approvals.models import EscalationChain, EscalationLevel, Policy
from cockpit.roles import REVIEWER

_keys = count(1)


def chain(name="refunds-chain", minutes=(10, 10, 10, 10), *, groups=True, **fields):
    """A chain of len(minutes) levels; level n reviewed by group "reviewers-l<n>" if groups."""
    made = EscalationChain.objects.create(name=name, **fields)
    for number, budget in enumerate(minutes, start=1):
        group = Group.objects.get_or_create(name=f"reviewers-l{number}")[0] if groups else None
        EscalationLevel.objects.create(
            chain=made, number=number, time_budget=timedelta(minutes=budget), reviewer_group=group
        )
    return made


def policy(chain_, **fields):
    defaults = {"name": "refunds", "agent_name": "refund-bot", "action": "refund"}
    return Policy.objects.create(chain=chain_, **{**defaults, **fields})


def ask(project, now=None, **data):
    """do_create_request with a refund by default; returns the request."""
    payload = {
        "idempotency_key": f"key-{next(_keys)}",
        "agent": "refund-bot",
        "action": "refund",
        "arguments": {"order": "A-1001", "amount": 4000},
        "amount": Decimal("4000"),
        "currency": "USD",
        "summary": "Refund order A-1001",
        "rationale": "The customer was charged twice.",
        "risk": "high",
        **data,
    }
    request, _ = do_create_request(project, payload, now=now)
    return request


def make_reviewer(username, *levels):
    """A person with the reviewer role, in the reviewer groups of these levels."""
    user = User.objects.create_user(username, f"{username}@example.com", "x")
    names = [REVIEWER, *(f"reviewers-l{level}" for level in levels)]
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])
    return user
