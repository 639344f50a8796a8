"""Django admin: admins configure SLOs, budgets and webhooks; audit records are read-only."""

import pytest
from django.urls import reverse

from cockpit.models import Intervention
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["slo", "budget", "webhook"])
def test_admins_can_add_what_they_configure(client_as, model):
    response = client_as("admin").get(reverse(f"admin:cockpit_{model}_add"))
    assert response.status_code == 200


@pytest.mark.parametrize("model", ["alertevent", "webhookdelivery", "intervention"])
def test_audit_records_cannot_be_added_by_hand(client_as, model):
    client = client_as("admin")
    assert client.get(reverse(f"admin:cockpit_{model}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:cockpit_{model}_add")).status_code == 403


def test_an_intervention_cannot_be_edited_or_deleted_in_admin(client_as, project, people):
    agent = make_agent(project)
    record = Intervention.objects.create(
        agent=agent, user=people["operator"], action="pause", reason="runaway cost"
    )
    client = client_as("admin")
    change = client.post(
        reverse("admin:cockpit_intervention_change", args=[record.pk]), {"reason": "edited"}
    )
    assert change.status_code == 403
    delete = client.post(
        reverse("admin:cockpit_intervention_delete", args=[record.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    record.refresh_from_db()
    assert record.reason == "runaway cost"
