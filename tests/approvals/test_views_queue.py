"""The reviewer queue: pending requests by deadline with countdowns, filters in the address,
who may decide what, the live part, and a pinned number of queries."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from approvals import engine, views
from approvals.models import ApprovalRequest, EscalationLevel
from tests.approvals.builders import ask, chain, policy
from tests.approvals.conftest import escalate, make_person

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
LIVE = {**HTMX, "HTTP_HX_TRIGGER": "approval-queue-live"}
# Session, user, the user's roles, the user's groups (for "at my levels"), the pending requests
# with their agents, the agent names of the filter. Flat in the number of requests.
QUEUE_QUERIES = 6


def listed(response):
    return [row["approval"].pk for row in response.context["rows"]]


def queue(client, **params):
    return client.get(reverse("approval-queue"), params)


def test_it_lists_pending_requests_soonest_deadline_first(client_as, ask_refund, reviewer_l1):
    at_l2 = escalate(ask_refund(), 2)  # due 10 minutes after its L1 deadline
    later = ask_refund()
    sooner = ask_refund(now=engine.timezone.now() - timedelta(minutes=5))
    decided = ask_refund(now=engine.timezone.now() - timedelta(minutes=8))
    engine.do_decide(decided.pk, reviewer_l1, "approve", seen_sha256=decided.arguments_sha256)

    response = queue(client_as("viewer"))

    assert response.status_code == 200
    assert listed(response) == [sooner.pk, later.pk, at_l2.pk]


def test_each_row_shows_countdown_level_risk_agent_action_and_amount(client_as, ask_refund):
    request = ask_refund(amount=Decimal("4000"), currency="USD")

    html = queue(client_as("viewer")).content.decode()

    assert f'data-due="{int(request.level_due_at.timestamp())}"' in html
    assert f'data-start="{int(request.level_started_at.timestamp())}"' in html
    assert '<span class="badge level level-1"' in html
    assert '<span class="badge risk-high">high</span>' in html
    assert ">refund-bot</a>" in html and ">refund</a>" in html
    assert "4,000.00 USD" in html


def test_agent_text_in_the_queue_is_escaped(client_as, project, refunds_policy):
    ask(project, summary="<img src=x onerror=alert(1)>", action="refund<b>")

    html = queue(client_as("viewer")).content.decode()

    assert "<img src=x" not in html and "refund<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_filters_by_level_risk_and_agent(client_as, project, ask_refund):
    at_l2 = escalate(ask_refund(), 2)
    at_l1 = ask_refund()
    other = ask(project, agent="mail-bot", action="email", risk="critical")
    client = client_as("viewer")

    assert listed(queue(client, level=2)) == [at_l2.pk]
    assert listed(queue(client, risk="critical")) == [other.pk]
    assert listed(queue(client, agent="refund-bot")) == [at_l1.pk, at_l2.pk]
    assert listed(queue(client, level="9")) == [at_l1.pk, other.pk, at_l2.pk]


def test_at_my_levels_shows_the_requests_at_a_level_i_review(
    client_for, ask_refund, reviewer_l1, reviewer_l3
):
    at_l3 = escalate(ask_refund(), 3)
    at_l1 = ask_refund()

    assert listed(queue(client_for(reviewer_l1), mine="1")) == [at_l1.pk]
    assert listed(queue(client_for(reviewer_l3), mine="1")) == [at_l3.pk]


def test_it_marks_what_the_reader_may_decide_as_the_engine_does(
    client_for, people, project, ask_refund, reviewer_l1, reviewer_l3
):
    policy(chain("lenient", earlier_levels_may_decide=True), agent_name="mail-bot")
    policy(chain("named"), agent_name="named-bot")
    named = make_person("nina", "reviewer")
    EscalationLevel.objects.get(chain__name="named", number=4).reviewers.add(named)
    requests = [
        escalate(ask(project, agent="named-bot"), 4),  # at L4 of a chain naming nina
        escalate(ask(project, agent="mail-bot"), 3),  # L1 may still decide
        escalate(ask_refund(), 3),
        ask_refund(),
        ask(project, agent="other-bot"),  # the default chain: any reviewer
    ]
    for user in (reviewer_l1, reviewer_l3, people["reviewer"], people["admin"], named):
        rows = queue(client_for(user)).context["rows"]
        marks = {row["approval"].pk: row["may_decide"] for row in rows}
        expected = {
            r.pk: engine.may_decide(user, ApprovalRequest.objects.get(pk=r.pk))[0] for r in requests
        }
        assert marks == expected, user.username


def test_a_viewer_sees_no_reviewer_filter(client_as, ask_refund):
    ask_refund()

    response = queue(client_as("viewer"))

    assert 'name="mine"' not in response.content.decode()
    assert not any(row["may_decide"] for row in response.context["rows"])


def test_the_page_subscribes_to_the_queue_topic_and_refreshes_its_live_part(client_as, ask_refund):
    ask_refund()

    html = queue(client_as("viewer"), risk="high").content.decode()

    assert 'ws-connect="/ws/live/approvals/"' in html
    assert 'id="approval-queue-live" hx-get="/approvals/?risk=high"' in html
    assert 'id="toasts"' in html


def test_the_live_refresh_answers_with_the_live_part_only(client_as, ask_refund):
    request = ask_refund()

    response = client_as("viewer").get(reverse("approval-queue"), {"level": "1"}, **LIVE)

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="approval-queue-live" hx-get="/approvals/?level=1"')
    assert f'data-id="{request.pk}"' in html
    assert "<html" not in html and 'id="queue-filters"' not in html
    assert response["Vary"].count("HX-Request") == 1


def test_an_empty_queue_says_nothing_is_waiting(client_as, db):
    html = queue(client_as("viewer")).content.decode()

    assert "Nothing is waiting for a decision" in html


def test_the_queue_reads_a_fixed_number_of_queries(
    client_for, ask_refund, reviewer_l1, django_assert_max_num_queries
):
    for _ in range(25):
        ask_refund()
    client = client_for(reviewer_l1)

    with django_assert_max_num_queries(QUEUE_QUERIES):
        response = queue(client, mine="1")

    assert len(response.context["rows"]) == 25


@pytest.mark.parametrize(
    ("left", "state", "text"),
    [
        (600, "calm", "10:00"),
        (150, "amber", "2:30"),  # the last quarter of ten minutes
        (60, "red", "1:00"),  # the last tenth (or minute)
        (-12, "overdue", "overdue 0:12"),
    ],
)
def test_a_countdown_turns_amber_then_red_near_the_deadline(left, state, text):
    now = datetime(2026, 5, 14, 12, 0, tzinfo=UTC)
    start = now - timedelta(seconds=600 - left)

    shown = views.countdown(now + timedelta(seconds=left), start, now)

    assert shown == {"state": state, "text": text}


def test_long_countdowns_read_in_hours_and_days():
    assert views.countdown_text(2 * 3600 + 5 * 60 + 9) == "2h 05m"
    assert views.countdown_text(3 * 86400 + 4 * 3600) == "3d 4h"


def test_anonymous_is_sent_to_log_in_and_an_outsider_refused(client, client_as, db):
    assert queue(client)["Location"].startswith("/login/")
    assert queue(client_as("outsider")).status_code == 403
