"""The blast radius against a fixture computed by hand: which runs count, and what they did."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from incidents import blast
from incidents.actions import do_add_query, do_link_run
from incidents.models import ToolEffect
from tests.factories import make_agent, make_run
from traces.models import Span

pytestmark = pytest.mark.django_db


def span(run, n, kind, *, tool="", cost=None, known=True, status="ok", error_type="", args=""):
    return Span.objects.create(
        project=run.project,
        run=run,
        agent=run.agent,
        trace_id=run.trace_id,
        span_id=f"{run.pk:08x}{n:08x}",
        parent_span_id="",
        kind=kind,
        name=tool or kind,
        tool_name=tool,
        started_at=run.started_at + timedelta(milliseconds=n),
        ended_at=run.started_at + timedelta(milliseconds=n + 1),
        cost_usd=cost,
        cost_known=known,
        status=status,
        error_type=error_type,
        input=args,
    )


@pytest.fixture
def fleet(project, agent):
    """Four runs of refund-agent and one of another agent, 10 to 50 minutes ago.

    r1 (user u1, conversation c1): llm $0.10, issue_refund to a@x.io, lookup_order
    r2 (user u1, conversation c2): llm $0.20 + an unpriced llm, send_email to b@y.io and a@x.io
    r3 (user u2, conversation c2): llm $0.05, a TimeoutError in run_sql
    r4 (no user, no conversation): llm $1.00 — outside every link and query
    other agent's run: in the window but not its agent
    """
    now = timezone.now()
    ToolEffect.objects.create(project=project, tool_name="lookup_order", effect="read_only")
    ToolEffect.objects.create(project=project, tool_name="issue_refund", effect="irreversible")
    ToolEffect.objects.create(project=project, tool_name="send_email", effect="irreversible")
    r1 = make_run(project, agent, spans=0, started_at=now - timedelta(minutes=50),
                  user_id="u1", conversation_id="c1")  # fmt: skip
    span(r1, 1, "llm", cost=Decimal("0.10"))
    span(r1, 2, "tool", tool="issue_refund", args='{"order_id": "A-1", "email": "a@x.io"}')
    span(r1, 3, "tool", tool="lookup_order", args='{"order_id": "A-1", "to": "nobody@read.only"}')
    r2 = make_run(project, agent, spans=0, started_at=now - timedelta(minutes=40),
                  user_id="u1", conversation_id="c2")  # fmt: skip
    span(r2, 1, "llm", cost=Decimal("0.20"))
    span(r2, 2, "llm", cost=None, known=False)
    span(r2, 3, "tool", tool="send_email", args='{"to": ["B@y.io", "a@x.io"], "body": "hi"}')
    r3 = make_run(project, agent, spans=0, started_at=now - timedelta(minutes=30),
                  user_id="u2", conversation_id="c2", status="error")  # fmt: skip
    span(r3, 1, "llm", cost=Decimal("0.05"))
    span(r3, 2, "tool", tool="run_sql", status="error", error_type="TimeoutError",
         args="SELECT 1 -- ops@corp.example")  # fmt: skip
    r4 = make_run(project, agent, spans=0, started_at=now - timedelta(minutes=10))
    span(r4, 1, "llm", cost=Decimal("1.00"))
    other = make_run(project, make_agent(project, "other"), spans=0,
                     started_at=now - timedelta(minutes=35), user_id="u9")  # fmt: skip
    span(other, 1, "llm", cost=Decimal("9.00"))
    return {"r1": r1, "r2": r2, "r3": r3, "r4": r4, "other": other, "now": now}


def test_it_counts_the_runs_linked_by_hand_and_by_query(incident, fleet, people, agent):
    do_link_run(incident, fleet["r1"], relation="trigger", user=people["commander"])
    # r2 and r3 by query: the agent's runs in a window that leaves r1 (already in) and r4 out.
    do_add_query(incident, user=people["commander"], relation="affected", agent=agent,
                 since=fleet["now"] - timedelta(minutes=45),
                 until=fleet["now"] - timedelta(minutes=20),
                 error_type="", outcome="", status="")  # fmt: skip
    radius = blast.compute(incident)
    assert radius["runs"] == 3
    assert radius["failed_runs"] == 1  # r3
    assert radius["conversations"] == 2  # c1, c2
    assert radius["users"] == 2  # u1, u2
    assert radius["llm_calls"] == 4
    assert radius["llm_unpriced_calls"] == 1
    assert Decimal(radius["llm_spend_usd"]) == Decimal("0.35")
    assert radius["tool_calls"] == 4
    # issue_refund, send_email (irreversible) and run_sql (not marked: assumed side effects).
    assert radius["side_effect_calls"] == 3
    assert radius["irreversible_calls"] == 2
    assert {a["tool"] for a in radius["irreversible"]} == {"issue_refund", "send_email"}
    # Recipients of side-effecting calls only, case-insensitively distinct; not lookup_order's.
    assert sorted(r.lower() for r in radius["recipients"]) == [
        "a@x.io", "b@y.io", "ops@corp.example",
    ]  # fmt: skip
    assert radius["recipient_count"] == 3


def test_the_query_that_produced_it_is_described(incident, fleet, people, agent):
    do_link_run(incident, fleet["r1"], relation="trigger", user=people["commander"])
    do_add_query(incident, user=people["commander"], relation="affected", agent=agent,
                 since=fleet["now"] - timedelta(minutes=45), until=None,
                 error_type="TimeoutError", outcome="", status="")  # fmt: skip
    radius = blast.compute(incident)
    assert radius["scope"][0] == "1 run linked by hand as trigger or affected"
    assert "agent = refund-agent" in radius["scope"][1]
    assert "started < incident end" in radius["scope"][1]
    assert "error type = TimeoutError" in radius["scope"][1]
    assert radius["runs"] == 2  # r1, and r3 (the only run with a TimeoutError span)


def test_evidence_links_are_not_harm(incident, fleet, people):
    do_link_run(incident, fleet["r4"], relation="evidence", user=people["commander"])
    radius = blast.compute(incident)
    assert radius["runs"] == 0
    assert radius["llm_spend_usd"] == "0.000000"


def test_an_open_ended_query_keeps_counting_new_runs(incident, fleet, people, agent):
    do_add_query(incident, user=people["commander"], relation="affected", agent=agent,
                 since=fleet["now"] - timedelta(minutes=60), until=None,
                 error_type="", outcome="", status="")  # fmt: skip
    assert blast.compute(incident)["runs"] == 4
    make_run(incident.project, agent, spans=0, started_at=timezone.now())
    assert blast.compute(incident)["runs"] == 5


def test_a_stale_radius_of_an_open_incident_is_recomputed(incident, fleet, people):
    do_link_run(incident, fleet["r1"], relation="affected", user=people["commander"])
    stored = incident.blast_radius_at
    later = stored + blast.STALE_AFTER + timedelta(seconds=1)
    do_link_run(incident, fleet["r2"], relation="affected", user=people["commander"])
    incident.blast_radius_at = stored  # as a page would see an old computation
    assert blast.current(incident, now=later)["runs"] == 2
    assert incident.blast_radius_at == later
