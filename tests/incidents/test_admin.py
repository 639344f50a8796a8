"""Admins configure auto-open rules and tool effects in the Django admin."""

import pytest
from django.urls import reverse

from cockpit.models import AlertEvent
from incidents.models import AutoOpenRule, ToolEffect

pytestmark = pytest.mark.django_db


def test_an_admin_adds_an_auto_open_rule(client_as, project):
    response = client_as("admin").post(
        reverse("admin:incidents_autoopenrule_add"),
        {
            "project": project.pk,
            "alert_kind": AlertEvent.Kind.SLO_FAST_BURN,
            "severity": 2,
            "failure_class": "",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    assert AutoOpenRule.objects.get().severity == 2


def test_an_admin_marks_a_tool_irreversible(client_as, project):
    client_as("admin").post(
        reverse("admin:incidents_tooleffect_add"),
        {"project": project.pk, "tool_name": "issue_refund", "effect": "irreversible"},
    )
    assert ToolEffect.objects.get().effect == "irreversible"


def test_a_commander_cannot_reach_the_admin(client_as):
    response = client_as("commander").get(reverse("admin:incidents_tooleffect_changelist"))
    assert response.status_code == 302  # to the admin login
