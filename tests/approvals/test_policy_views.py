"""The policies page: everyone with a role reads policies and chains; admins create and edit
policies, validated by the model."""

import json

import pytest
from django.urls import reverse

from approvals.models import Policy
from tests.approvals.builders import chain, policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunds(refunds_chain):
    return policy(
        refunds_chain,
        name="large <refunds>",
        conditions=[{"field": "amount", "op": ">", "value": 1000}],
        allowed_decisions=["approve", "reject"],
        approvals_required=2,
    )


def form_data(chain_, **changes):
    data = {
        "name": "emails to regulators",
        "priority": "50",
        "enabled": "on",
        "agent_name": "mail-bot",
        "action": "send_email",
        "conditions": json.dumps([{"field": "to", "op": "contains", "value": "sec.gov"}]),
        "risk_tier": "critical",
        "chain": str(chain_.pk),
        "approvals_required": "2",
        "allowed_decisions": ["approve", "reject"],
        "on_expiry": "deny_and_alert",
    }
    data.update(changes)
    return data


def test_it_lists_policies_with_their_match_and_the_chains_with_their_levels(client_as, refunds):
    response = client_as("viewer").get(reverse("approval-policies"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "large &lt;refunds&gt;" in html
    assert "amount &gt; 1000" in html
    assert "approve, reject" in html
    assert 'id="chain-' in html and "refunds-chain" in html
    assert html.count('<span class="badge level level-') == 4
    assert "reviewers-l3" in html
    assert html.count(">10 min</td>") == 4
    # Viewers read; only admins get the edit links.
    assert reverse("approval-policy-create") not in html


def test_an_admin_sees_the_edit_links(client_as, refunds):
    html = client_as("admin").get(reverse("approval-policies")).content.decode()

    assert reverse("approval-policy-create") in html
    assert reverse("approval-policy-edit", args=[refunds.pk]) in html


def test_an_admin_creates_a_policy(client_as, refunds_chain):
    response = client_as("admin").post(reverse("approval-policy-create"), form_data(refunds_chain))

    assert response.status_code == 302
    created = Policy.objects.get(name="emails to regulators")
    assert created.conditions == [{"field": "to", "op": "contains", "value": "sec.gov"}]
    assert created.allowed_decisions == ["approve", "reject"]
    assert (created.risk_tier, created.approvals_required) == ("critical", 2)


def test_an_admin_edits_a_policy(client_as, refunds):
    other = chain("other-chain")

    response = client_as("admin").post(
        reverse("approval-policy-edit", args=[refunds.pk]),
        form_data(other, name="refunds", conditions="", allowed_decisions=[]),
    )

    assert response.status_code == 302
    refunds.refresh_from_db()
    assert (refunds.name, refunds.chain, refunds.conditions) == ("refunds", other, [])
    assert refunds.allowed_decisions == []  # none ticked: every decision


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"conditions": '[{"field": "amount"}]'}, "conditions", 'needs exactly "field"'),
        ({"conditions": "{not json"}, "conditions", "Enter a valid JSON."),
        ({"allowed_decisions": ["approve"]}, "allowed_decisions", "reject is always allowed"),
        ({"approvals_required": "11"}, "approvals_required", "From 1 to 10"),
    ],
)
def test_a_bad_policy_is_refused_field_by_field(client_as, refunds_chain, changes, field, message):
    response = client_as("admin").post(
        reverse("approval-policy-create"), form_data(refunds_chain, **changes)
    )

    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert not Policy.objects.exists()


@pytest.mark.parametrize("person", ["viewer", "reviewer", "operator", "outsider"])
def test_only_admins_create_or_edit_policies(client_as, refunds, person):
    client = client_as(person)

    assert client.get(reverse("approval-policy-create")).status_code == 403
    response = client.post(
        reverse("approval-policy-edit", args=[refunds.pk]), form_data(refunds.chain)
    )
    assert response.status_code == 403
    refunds.refresh_from_db()
    assert refunds.name == "large <refunds>"


def test_anonymous_is_sent_to_log_in_and_an_outsider_refused_the_list(client, client_as, db):
    assert client.get(reverse("approval-policies"))["Location"].startswith("/login/")
    assert client.get(reverse("approval-policy-create"))["Location"].startswith("/login/")
    assert client_as("outsider").get(reverse("approval-policies")).status_code == 403


def test_the_form_page_renders_for_an_admin(client_as, refunds):
    response = client_as("admin").get(reverse("approval-policy-edit", args=[refunds.pk]))

    assert response.status_code == 200
    assert "amount" in response.context["form"]["conditions"].value()
