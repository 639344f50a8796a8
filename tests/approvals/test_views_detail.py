"""The request page: the exact arguments, the platform's risk apart from the agent's words, the
trace and agent history, the escalation history and timeline, and the live part."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils.html import escape

from approvals import engine
from approvals.models import ApprovalEvent
from tests.approvals.conftest import escalate
from tests.factories import make_agent, make_run

pytestmark = pytest.mark.django_db

LIVE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER": "approval-live"}


def pretty(request):
    return json.dumps(request.arguments, indent=2, ensure_ascii=False)


def page(client, request):
    return client.get(reverse("approval-detail", args=[request.pk]))


def test_it_shows_the_exact_arguments_escaped_and_pretty(client_as, ask_refund):
    request = ask_refund(arguments={"order": "A-1001", "note": "<script>alert(1)</script>"})

    html = page(client_as("viewer"), request).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    request.refresh_from_db()  # the key order the database keeps
    assert f'<pre class="arguments" id="arguments-json">{escape(pretty(request))}</pre>' in html


def test_the_agents_rationale_is_labelled_as_its_own_words_apart_from_the_platforms_risk(
    client_as, ask_refund
):
    request = ask_refund(rationale="Trust me, <b>the boss</b> said so.")

    response = page(client_as("viewer"), request)
    html = response.content.decode()

    platform = html.index("Platform risk assessment")
    agent = html.index("The agent's rationale")
    assert platform < agent
    assert escape(request.risk_summary) in html[platform:agent]
    assert "own words" in html[agent:]
    assert "Trust me, &lt;b&gt;the boss&lt;/b&gt; said so." in html[agent:]


def test_it_shows_the_last_steps_of_the_trace_newest_last_and_links_it(
    client_as, ask_refund, project
):
    run = make_run(project, make_agent(project, "refund-bot"), spans=12)
    request = ask_refund(trace_id=run.trace_id)

    response = page(client_as("viewer"), request)

    steps = response.context["trace"]["steps"]
    assert [step["name"] for step in steps] == [f"step {i}" for i in range(4, 12)]
    assert f'href="/traces/{run.trace_id}/?project=acme"' in response.content.decode()


def test_a_trace_not_yet_arrived_is_said_so(client_as, ask_refund):
    request = ask_refund(trace_id="ab" * 16)

    response = page(client_as("viewer"), request)

    assert response.context["trace"] == {"run": None, "steps": []}
    assert "has not arrived yet" in response.content.decode()


def test_it_shows_the_agents_approve_rate_and_recent_rejections(client_as, ask_refund, reviewer_l1):
    for n in range(3):
        earlier = ask_refund(arguments={"order": f"B-{n}"})
        engine.do_decide(earlier.pk, reviewer_l1, "approve", seen_sha256=earlier.arguments_sha256)
    rejected = ask_refund(arguments={"order": "C-1"})
    engine.do_decide(
        rejected.pk, reviewer_l1, "reject", comment="Duplicate refund.",
        seen_sha256=rejected.arguments_sha256,
    )  # fmt: skip
    request = ask_refund()

    response = page(client_as("viewer"), request)

    history = response.context["history"]
    assert history["count"] == 4
    assert history["approve_rate"] == pytest.approx(0.75)
    assert [r.pk for r in history["rejections"]] == [rejected.pk]
    assert "Duplicate refund." in response.content.decode()


def test_it_shows_the_escalation_history_and_every_event(client_as, ask_refund):
    request = escalate(ask_refund(), 3)

    response = page(client_as("viewer"), request)

    states = [(level["number"], level["state"]) for level in response.context["levels"]]
    assert states == [(1, "escalated"), (2, "escalated"), (3, "current"), (4, "not reached")]
    texts = [line["text"] for line in response.context["timeline"]]
    assert texts.count("Escalated") == 2
    assert texts[0] == "Requested by the agent"
    assert "L1 → L2" in response.content.decode()


def test_opening_the_page_records_a_view_for_a_reviewer_not_for_a_viewer(
    client_as, client_for, ask_refund, reviewer_l1
):
    request = ask_refund()

    page(client_as("viewer"), request)
    page(client_for(reviewer_l1), request)
    page(client_for(reviewer_l1), request)

    views = request.events.filter(kind=ApprovalEvent.Kind.VIEWED)
    assert list(views.values_list("actor__username", flat=True)) == ["lena", "lena"]
    timeline = page(client_as("viewer"), request).context["timeline"]
    opened = [line for line in timeline if line["kind"] == "viewed"]
    assert [(line["actor"], line["views"]) for line in opened] == [("lena", 2)]


def test_the_live_refresh_answers_with_the_status_and_the_out_of_band_parts(client_as, ask_refund):
    request = ask_refund()
    client = client_as("reviewer")

    response = client.get(reverse("approval-detail", args=[request.pk]), **LIVE)

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="approval-live"')
    assert 'id="approval-escalation" hx-swap-oob="true"' in html
    assert 'id="approval-timeline" hx-swap-oob="true"' in html
    assert 'id="decision-form"' not in html
    # A live refresh is not someone opening the request.
    assert not request.events.filter(kind=ApprovalEvent.Kind.VIEWED).exists()


def test_the_page_subscribes_to_its_live_topic_and_links_an_incident(client_as, ask_refund):
    request = ask_refund()

    html = page(client_as("viewer"), request).content.decode()

    assert f'ws-connect="/ws/live/approval.{request.pk:x}/"' in html
    assert 'id="approval-live"' in html and 'hx-get="/approvals/' in html
    assert f'href="/incidents/new/?approval={request.pk}&amp;agent=refund-bot"' in html


def test_a_decided_edit_shows_both_versions_and_what_changed(client_as, ask_refund, reviewer_l1):
    request = ask_refund(arguments={"order": "A-1001", "amount": 4000, "reason": "double"})
    engine.do_decide(
        request.pk, reviewer_l1, "approve_edited", comment="Half now.",
        edited_arguments={"order": "A-1001", "amount": 2000, "note": "rest later"},
        seen_sha256=request.arguments_sha256,
    )  # fmt: skip

    response = page(client_as("viewer"), request)

    assert response.context["changes"] == [
        {"path": "amount", "kind": "changed", "before": "4000", "after": "2000"},
        {"path": "reason", "kind": "removed", "before": '"double"', "after": ""},
        {"path": "note", "kind": "added", "before": "", "after": '"rest later"'},
    ]
    html = response.content.decode()
    assert "Approved with edited arguments" in html and "lena" in html
    live = client_as("viewer").get(reverse("approval-detail", args=[request.pk]), **LIVE)
    assert live.context["changes"] == response.context["changes"]
    assert '<td class="mono wrap after">2000</td>' in live.content.decode()


def test_next_and_previous_follow_the_queue_order(client_as, ask_refund, project):
    first, second, third = ask_refund(), ask_refund(), ask_refund()

    context = page(client_as("viewer"), second).context

    assert (context["previous_pk"], context["next_pk"]) == (first.pk, third.pk)


def test_an_unknown_request_is_a_404(client_as):
    assert client_as("viewer").get(reverse("approval-detail", args=[999999])).status_code == 404


def test_the_countdown_starts_from_the_level_deadline(client_as, ask_refund):
    request = ask_refund()

    countdown = page(client_as("viewer"), request).context["countdown"]

    assert countdown["state"] == "calm"
    assert countdown["text"] in ("9:59", "10:00")
    assert request.level_due_at - request.created_at == timedelta(minutes=10)
