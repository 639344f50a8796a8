"""Incidents' fixtures: an agent with runs, and a helper that opens incidents through the
same do_open_incident the views call."""

from datetime import timedelta

import pytest
from django.utils import timezone

from incidents.actions import do_open_incident
from incidents.models import Severity
from tests.factories import make_agent, make_run


@pytest.fixture
def agent(project):
    return make_agent(project, "refund-agent")


@pytest.fixture
def open_incident(project, people, agent):
    """open_incident(severity=…, **fields) → an incident in triage, opened by the commander."""

    def open_(**fields):
        fields.setdefault("title", "Refunds sent twice")
        fields.setdefault("severity", Severity.SEV3)
        fields.setdefault("user", people["commander"])
        fields.setdefault("agents", [agent])
        fields.setdefault("started_at", timezone.now() - timedelta(minutes=30))
        return do_open_incident(project=project, **fields)

    return open_


@pytest.fixture
def incident(open_incident):
    return open_incident()


@pytest.fixture
def run(project, agent):
    return make_run(project, agent, status="error", user_id="u-1", conversation_id="c-1")
