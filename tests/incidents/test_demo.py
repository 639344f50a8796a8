"""The demo incidents: a closed one with a published postmortem and an open one, both on runs
of the demo fleet's agents sent through OTLP as the fleet sends them."""

import pytest
from django.contrib.auth.models import Group, User

from cockpit import roles
from incidents.demo import OPEN_TITLE, RESOLVED_TITLE, seed_demo_incidents
from incidents.models import AutoOpenRule, Incident, Status, ToolEffect
from traces.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo_user(db):
    user = User.objects.create_user("demo", "demo@example.com", "x")
    user.groups.add(Group.objects.get_or_create(name=roles.ADMIN)[0])
    return user


@pytest.fixture
def seeded(live_server, project, ingest_key, demo_user):
    seed_demo_incidents(live_server.url, ingest_key)
    return project


def test_the_replayed_runs_arrive_dated_in_the_past(seeded):
    sql_runs = Run.objects.filter(project=seeded, agent__name="sql-analyst")
    assert sql_runs.count() == 6
    oldest = sql_runs.order_by("started_at").first()
    closed = Incident.objects.get(title=RESOLVED_TITLE)
    assert closed.trace_links.get(relation="trigger").run == oldest
    assert closed.started_at == oldest.started_at


def test_the_resolved_incident_is_closed_with_a_published_postmortem(seeded):
    incident = Incident.objects.get(title=RESOLVED_TITLE)
    assert incident.status == Status.CLOSED
    assert incident.postmortem.status == "published"
    stamps = [incident.started_at, incident.detected_at, incident.acknowledged_at,
              incident.mitigated_at, incident.resolved_at, incident.closed_at]  # fmt: skip
    assert stamps == sorted(stamps)
    assert incident.blast_radius["runs"] >= 1
    assert incident.events.filter(starred=True).exists()
    assert incident.action_items.count() == 2


def test_the_open_incident_is_active_and_counts_its_agents_runs(seeded):
    incident = Incident.objects.get(title=OPEN_TITLE)
    assert incident.status == Status.ACTIVE
    assert incident.severity == 1
    assert incident.trace_queries.get().until is None
    assert incident.blast_radius["runs"] == 3  # the replayed outbound-email runs


def test_the_demo_marks_tools_and_auto_opens_on_budget_breaches(seeded):
    assert ToolEffect.objects.get(project=seeded, tool_name="issue_refund").effect == "irreversible"
    assert AutoOpenRule.objects.get(project=seeded).alert_kind == "budget_breach"


def test_seeding_again_changes_nothing(seeded, live_server, ingest_key):
    seed_demo_incidents(live_server.url, ingest_key)
    assert Incident.objects.count() == 2
    assert Run.objects.filter(project=seeded).count() == 9


def test_a_failure_never_stops_the_demo(project, demo_user):
    # Nothing listens on port 9: the replay fails, and seeding logs it instead of raising.
    seed_demo_incidents("http://127.0.0.1:9", "ck_nothing")
    assert not Incident.objects.exists()
