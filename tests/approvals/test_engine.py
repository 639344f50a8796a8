"""The approval engine: creating, deciding, cancelling, freezing; snapshots, M-of-N, hashes."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import ProgrammingError, connection, transaction
from django.utils import timezone

from approvals import engine
from approvals.models import (
    AppendOnlyError,
    ApprovalEvent,
    ApprovalRequest,
    EscalationLevel,
    arguments_sha256,
)
from tests.approvals.builders import ask, chain, make_reviewer, policy
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

Status = ApprovalRequest.Status


@pytest.fixture
def refunds(project):
    return policy(chain(), approvals_required=1)


def kinds(request):
    return list(request.events.order_by("id").values_list("kind", flat=True))


def decide(request, user, decision="approve", **kwargs):
    kwargs.setdefault("seen_sha256", request.arguments_sha256)
    return engine.do_decide(request.pk, user, decision, **kwargs)


# --- Creating -------------------------------------------------------------------------------


def test_a_request_copies_its_policy_and_chain_and_starts_at_l1(project, refunds):
    now = timezone.now()
    request = ask(project, now=now)

    assert request.status == Status.PENDING and request.level == 1
    assert request.policy_snapshot["name"] == "refunds"
    assert [level["number"] for level in request.chain_snapshot["levels"]] == [1, 2, 3, 4]
    assert request.level_due_at == now + timedelta(minutes=10)
    assert request.remind_at == now + timedelta(minutes=5)
    assert request.expires_at == now + timedelta(minutes=40)
    assert request.arguments_sha256 == arguments_sha256({"amount": 4000, "order": "A-1001"})
    assert kinds(request) == ["created"]


def test_later_edits_of_policy_and_chain_never_change_a_request_in_flight(project, refunds):
    request = ask(project)
    refunds.approvals_required = 3
    refunds.risk_tier = "low"
    refunds.save()
    EscalationLevel.objects.filter(chain=refunds.chain).update(time_budget=timedelta(hours=9))

    request.refresh_from_db()
    assert request.approvals_required == 1 and request.risk_tier == "high"
    assert request.level_snapshot(2)["seconds"] == 600


def test_conditions_choose_the_policy_and_unmatched_requests_get_the_default(project):
    big = policy(chain(), name="big refunds", priority=1,
                 conditions=[{"field": "amount", "op": ">", "value": 1000}], risk_tier="critical")  # fmt: skip
    policy(big.chain, name="small refunds", priority=2, risk_tier="low")

    assert ask(project, amount=Decimal("4000")).risk_tier == "critical"
    assert ask(project, amount=Decimal("20")).risk_tier == "low"
    default = ask(project, agent="email-bot", action="send_email", risk="low")
    assert default.policy_snapshot["name"] == "default (no policy matched)"
    assert default.risk_tier == "high"  # never below high without a policy
    assert default.chain_snapshot["name"] == "default"
    assert len(default.chain_snapshot["levels"]) == 4


def test_an_argument_condition_reaches_into_nested_arguments(project):
    vip = policy(chain(), conditions=[{"field": "customer.tier", "op": "==", "value": "vip"}],
                 risk_tier="critical")  # fmt: skip

    assert ask(project, arguments={"customer": {"tier": "vip"}}).policy_snapshot["id"] == vip.pk
    assert ask(project, arguments={"customer": {}}).policy_snapshot["id"] is None


def test_a_paused_agents_request_is_rejected_at_once_with_the_reason(project, refunds):
    make_agent(project, "refund-bot", state="paused", state_reason="budget exceeded")

    request = ask(project)

    assert request.status == Status.REJECTED
    assert request.comment == "The agent is paused: budget exceeded"
    assert kinds(request) == ["created", "rejected_at_once"]


def test_creating_twice_with_one_key_returns_the_first_and_other_arguments_conflict(
    project, refunds
):
    data = {"idempotency_key": "k-1", "agent": "refund-bot", "action": "refund",
            "arguments": {"order": "A-1"}}  # fmt: skip
    first, created = engine.do_create_request(project, data)
    again, created_again = engine.do_create_request(
        project, {**data, "arguments": {"order": "A-1"}}
    )

    assert created and not created_again and again.pk == first.pk
    with pytest.raises(engine.ApprovalError) as conflict:
        engine.do_create_request(project, {**data, "arguments": {"order": "B-2"}})
    assert conflict.value.status == 409 and conflict.value.field == "idempotency_key"
    assert ApprovalRequest.objects.count() == 1


# --- Deciding -------------------------------------------------------------------------------


def test_approving_decides_binds_the_hash_and_logs_the_vote_and_decision(project, refunds):
    request = ask(project)
    reviewer = make_reviewer("lena", 1)

    outcome = decide(request, reviewer)

    request.refresh_from_db()
    assert outcome.decided and request.status == Status.APPROVED
    assert request.decided_by == reviewer and request.effective_sha256 == request.arguments_sha256
    assert kinds(request) == ["created", "voted", "decided"]


def test_approving_with_edits_gives_new_effective_arguments_with_their_own_hash(project, refunds):
    request = ask(project)

    decide(request, make_reviewer("lena", 1), "approve_edited",
           edited_arguments={"order": "A-1001", "amount": 2500})  # fmt: skip

    request.refresh_from_db()
    assert request.effective_arguments == {"order": "A-1001", "amount": 2500}
    assert request.effective_sha256 == arguments_sha256({"amount": 2500, "order": "A-1001"})
    assert request.effective_sha256 != request.arguments_sha256 and request.was_edited


def test_a_decision_on_arguments_other_than_the_requests_is_refused(project, refunds):
    request = ask(project)

    with pytest.raises(engine.ApprovalError) as refused:
        decide(request, make_reviewer("lena", 1), seen_sha256="0" * 64)

    assert refused.value.status == 409
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_rejecting_needs_a_comment(project, refunds):
    request = ask(project)
    reviewer = make_reviewer("lena", 1)

    with pytest.raises(engine.ApprovalError, match="comment"):
        decide(request, reviewer, "reject", comment="  ")
    decide(request, reviewer, "reject", comment="Duplicate of #12")

    request.refresh_from_db()
    assert request.status == Status.REJECTED and request.comment == "Duplicate of #12"


def test_a_decided_request_cannot_be_decided_again(project, refunds):
    request = ask(project)
    decide(request, make_reviewer("lena", 1))

    with pytest.raises(engine.ApprovalError) as late:
        decide(request, make_reviewer("omar", 1), "reject", comment="no")

    assert late.value.status == 409 and "already approved by lena" in str(late.value)
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert kinds(request)[-1] == "late_decision_ignored"


def test_the_agents_owner_may_not_approve_unless_the_policy_says_so(project, refunds):
    owner = make_reviewer("owner", 1)
    make_agent(project, "refund-bot", owner=owner)
    request = ask(project)

    with pytest.raises(engine.ApprovalError) as refused:
        decide(request, owner)
    assert refused.value.status == 403

    refunds.owner_may_approve = True
    refunds.save()
    allowed = ask(project)
    assert decide(allowed, owner).decided


def test_m_of_n_needs_distinct_reviewers_before_approving(project):
    policy(chain(), approvals_required=2)
    request = ask(project)
    first, second = make_reviewer("lena", 1), make_reviewer("omar", 1)

    outcome = decide(request, first)
    assert not outcome.decided and "1 of 2" in outcome.message
    with pytest.raises(engine.ApprovalError, match="already voted"):
        decide(request, first)
    assert decide(request, second).decided

    request.refresh_from_db()
    assert request.status == Status.APPROVED and request.votes.count() == 2


def test_one_rejection_decides_an_m_of_n_request(project):
    policy(chain(), approvals_required=3)
    request = ask(project)
    decide(request, make_reviewer("lena", 1))

    decide(request, make_reviewer("omar", 1), "reject", comment="Looks like fraud")

    request.refresh_from_db()
    assert request.status == Status.REJECTED


def test_a_decision_the_policy_does_not_allow_is_refused(project):
    policy(chain(), allowed_decisions=["approve", "reject"])
    request = ask(project)

    with pytest.raises(engine.ApprovalError, match="does not allow"):
        decide(request, make_reviewer("lena", 1), "approve_edited", edited_arguments={"x": 1})


def test_an_l1_reviewer_cannot_decide_at_l3_unless_the_chain_allows(project, refunds):
    request = ask(project)
    ApprovalRequest.objects.filter(pk=request.pk).update(level=3)
    l1, l3 = make_reviewer("lena", 1), make_reviewer("rui", 3)

    with pytest.raises(engine.ApprovalError) as refused:
        decide(request, l1)
    assert refused.value.status == 403 and "L3" in str(refused.value)
    assert decide(request, l3).decided

    refunds.chain.earlier_levels_may_decide = True
    refunds.chain.save()
    lenient = ask(project)
    ApprovalRequest.objects.filter(pk=lenient.pk).update(level=3)
    assert decide(lenient, l1).decided


def test_a_later_levels_reviewer_may_take_an_earlier_request(project, refunds):
    request = ask(project)

    assert decide(request, make_reviewer("rui", 3)).decided


def test_people_without_the_reviewer_role_cannot_decide_and_admins_can(project, refunds, people):
    for name in ("viewer", "operator", "commander"):
        with pytest.raises(engine.ApprovalError) as refused:
            decide(ask(project), people[name])
        assert refused.value.status == 403
    assert decide(ask(project), people["admin"]).decided


# --- Cancelling, freezing, the log ------------------------------------------------------------


def test_an_agent_may_cancel_a_pending_request_but_not_a_decided_one(project, refunds):
    request = engine.do_cancel(ask(project))
    assert request.status == Status.CANCELLED and kinds(request)[-1] == "cancelled"

    with pytest.raises(engine.ApprovalError) as refused:
        engine.do_cancel(request)
    assert refused.value.status == 409


def test_freezing_rejects_only_the_pending_requests_of_the_agents(project, refunds, people):
    pending = ask(project)
    decided = ask(project)
    decide(decided, make_reviewer("lena", 1))
    other = ask(project, agent="email-bot", action="send_email")

    frozen = engine.do_freeze_agents(
        [pending.agent], reason="Incident #4: refunds frozen", actor=people["commander"]
    )

    assert [r.pk for r in frozen] == [pending.pk]
    pending.refresh_from_db()
    assert pending.status == Status.REJECTED and pending.comment == "Incident #4: refunds frozen"
    assert ApprovalRequest.objects.get(pk=other.pk).status == Status.PENDING
    assert ApprovalRequest.objects.get(pk=decided.pk).status == Status.APPROVED


def test_the_event_log_is_never_updated(project, refunds):
    event = ask(project).events.get()

    event.details = {"tampered": True}
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    if connection.vendor == "postgresql":
        # The trigger: not even a queryset update gets through.
        with pytest.raises(ProgrammingError, match="append-only"), transaction.atomic():
            ApprovalEvent.objects.filter(pk=event.pk).update(details={"tampered": True})
    assert ApprovalEvent.objects.get(pk=event.pk).details == {"policy": "refunds"}


def test_the_platforms_risk_summary_is_its_own_not_the_agents(project, refunds):
    request = ask(project, risk="low", rationale="Trust me, this is fine.")

    assert "Risk tier high by policy “refunds” (the agent said low)" in request.risk_summary
    assert "Trust me" not in request.risk_summary
    assert "Amount 4,000.00 USD" in request.risk_summary
