"""Django admin: admins configure policies and chains; requests and events are read-only."""

import pytest
from django.urls import reverse

from approvals.models import EscalationChain, Policy
from tests.approvals.builders import ask, chain, policy

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["policy", "escalationchain"])
def test_admins_configure_policies_and_chains(client_as, model):
    assert client_as("admin").get(reverse(f"admin:approvals_{model}_add")).status_code == 200


def test_a_chain_with_its_levels_and_a_policy_are_created_in_admin(client_as):
    client = client_as("admin")
    response = client.post(reverse("admin:approvals_escalationchain_add"), {
        "name": "payments", "description": "", "levels-TOTAL_FORMS": "1",
        "levels-INITIAL_FORMS": "0", "levels-MIN_NUM_FORMS": "0", "levels-MAX_NUM_FORMS": "4",
        "levels-0-number": "1", "levels-0-time_budget": "00:20:00",
        "levels-0-remind_at_fraction": "0.5", "levels-0-webhook_url": "",
        "levels-0-webhook_secret": "", "levels-0-email_to": "",
    })  # fmt: skip
    assert response.status_code == 302, response.context["errors"] if response.context else ""
    payments = EscalationChain.objects.get(name="payments")
    assert payments.levels.get().time_budget.total_seconds() == 1200

    bad = client.post(reverse("admin:approvals_policy_add"), {
        "name": "big", "priority": "1", "enabled": "on", "chain": payments.pk,
        "conditions": '[{"field": "amount", "op": "~", "value": 1}]', "risk_tier": "high",
        "allowed_decisions": "[]", "approvals_required": "1", "on_expiry": "deny",
    })  # fmt: skip
    assert bad.status_code == 200 and "op must be one of" in bad.content.decode()
    assert not Policy.objects.exists()


@pytest.mark.parametrize("model", ["approvalrequest", "approvalevent"])
def test_requests_and_their_log_cannot_be_added_or_changed_by_hand(client_as, project, model):
    policy(chain())
    ask(project)
    client = client_as("admin")
    assert client.get(reverse(f"admin:approvals_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:approvals_{model}_add")).status_code == 403


def test_people_without_the_admin_role_cannot_open_approval_admin(client_as):
    for name in ("reviewer", "viewer", "commander"):
        response = client_as(name).get(reverse("admin:approvals_policy_changelist"))
        assert response.status_code in (302, 403)
