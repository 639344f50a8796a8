"""Fixtures of the reviewer-page tests: a four-level refunds chain (level n reviewed by group
"reviewers-l<n>"), its policy, reviewers at L1 and L3, and helpers to ask and escalate."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from approvals import engine
from approvals.models import ApprovalRequest
from cockpit.roles import REVIEWER
from tests.approvals.builders import ask, chain, policy
from tests.conftest import PASSWORD


def make_person(username: str, *groups: str) -> User:
    """A person who can log in with the shared test password, in these groups."""
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
    return user


@pytest.fixture
def refunds_chain(db):
    return chain("refunds-chain", minutes=(10, 10, 10, 10))


@pytest.fixture
def refunds_policy(refunds_chain):
    return policy(refunds_chain, name="large refunds")


@pytest.fixture
def reviewer_l1(db):
    return make_person("lena", REVIEWER, "reviewers-l1")


@pytest.fixture
def reviewer_l3(db):
    return make_person("otto", REVIEWER, "reviewers-l3")


@pytest.fixture
def ask_refund(project, refunds_policy):
    """ask_refund(**data) → a pending refund request of refund-bot under the refunds policy."""
    return lambda **data: ask(project, **data)


@pytest.fixture
def client_for(db):
    """client_for(user) → a fresh test client logged in as that user."""

    def login(user):
        client = Client()
        client.force_login(user)
        return client

    return login


def escalate(request: ApprovalRequest, to_level: int) -> ApprovalRequest:
    """Let the sweeper escalate the request level by level (each deadline just passed).

    The sweeper moves every request due by then: make the other requests of a test after."""
    while request.level < to_level:
        engine.sweep(now=request.level_due_at + timedelta(seconds=1))
        request.refresh_from_db()
    return request
