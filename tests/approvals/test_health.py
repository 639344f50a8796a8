"""Queue health: time to decision by level and risk, escalation and expiry rates, each
reviewer's approve rate and review time, and the rubber-stamp warning — against numbers worked
out by hand."""

from collections import Counter
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals import engine
from approvals.health import percentile, queue_health
from tests.approvals.builders import ask
from tests.approvals.conftest import make_person
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
DAY_AGO = NOW - timedelta(days=1)


def decided_after(request, user, seconds, decision="approve", review_seconds=None, **extra):
    if decision == "reject":
        extra.setdefault("comment", "no")
    engine.do_decide(
        request.pk, user, decision, seen_sha256=request.arguments_sha256,
        review_seconds=review_seconds, now=request.created_at + timedelta(seconds=seconds),
        **extra,
    )  # fmt: skip


@pytest.fixture
def history(project, refunds_policy, reviewer_l1):
    """Closed in the window: at L1 after 30 s (critical, no policy), 60 s, 120 s and 300 s
    (rejected); at L2 after 720 s; one expired; one cancelled. Left out: a paused agent's
    refusal and a request decided 40 days ago."""
    lena = reviewer_l1
    at = iter(DAY_AGO + timedelta(hours=n) for n in range(10))
    decided_after(ask(project, now=next(at), agent="ops-bot", risk="critical"), lena, 30)
    decided_after(ask(project, now=next(at)), lena, 60)
    decided_after(ask(project, now=next(at)), lena, 120, "approve_edited",
                  edited_arguments={"order": "A-1001", "amount": 10})  # fmt: skip
    decided_after(ask(project, now=next(at)), lena, 300, "reject")
    escalated = ask(project, now=next(at))
    engine.sweep(now=escalated.level_due_at + timedelta(seconds=1))
    l3_reviewer = make_person("otto", "reviewer", "reviewers-l2")
    decided_after(escalated, l3_reviewer, 720)
    expired = ask(project, now=next(at))
    for minutes in (10, 20, 30, 40):
        engine.sweep(now=expired.created_at + timedelta(minutes=minutes, seconds=1))
    engine.do_cancel(ask(project, now=next(at)), now=next(at))
    make_agent(project, "paused-bot", state="paused")
    ask(project, agent="paused-bot", now=next(at))
    decided_after(ask(project, now=NOW - timedelta(days=40)), lena, 5)


def test_percentiles_interpolate_between_the_closest_ranks():
    assert percentile(list(range(1, 11)), 0.9) == pytest.approx(9.1)
    assert percentile([60, 120, 300], 0.5) == 120
    assert percentile([7], 0.9) == 7
    assert percentile([], 0.5) is None


def test_time_to_decision_by_level_and_risk(history):
    health = queue_health(30, now=NOW)

    assert (health.overall.count, health.overall.median) == (5, 120)
    # p90 of 30, 60, 120, 300, 720: rank 3.6 → 300 + 0.6 × 420.
    assert health.overall.p90 == pytest.approx(552)
    l1, l2, l3, l4 = health.by_level
    assert (l1.count, l1.median, l1.p90) == (4, 90, pytest.approx(246))
    assert (l2.count, l2.median, l2.p90) == (1, 720, 720)
    assert l3.count == l4.count == 0 and l3.median is None
    by_risk = {timing.label: timing for timing in health.by_risk}
    assert (by_risk["high"].count, by_risk["high"].median) == (4, 210)
    assert by_risk["high"].p90 == pytest.approx(594)
    assert (by_risk["critical"].count, by_risk["critical"].median) == (1, 30)
    assert by_risk["low"].count == 0


def test_escalated_and_expired_shares_of_the_closed_requests(history):
    health = queue_health(30, now=NOW)

    assert (health.closed, health.reviewed) == (7, 5)
    assert (health.approved, health.edited, health.rejected) == (3, 1, 1)
    assert (health.expired, health.cancelled, health.escalated) == (1, 1, 2)
    assert health.escalated_rate == pytest.approx(2 / 7)
    assert health.expired_rate == pytest.approx(1 / 7)


def test_each_reviewers_approve_rate_and_median_review_time(project, refunds_policy):
    quick = make_person("quinn", "reviewer", "reviewers-l1")
    careful = make_person("cora", "reviewer", "reviewers-l1")
    for seconds, decision in ((40, "approve"), (90, "reject"), (65, "approve")):
        decided_after(ask(project, now=DAY_AGO), careful, 100, decision, review_seconds=seconds)
    decided_after(ask(project, now=DAY_AGO), quick, 100, review_seconds=None)

    reviewers = {r.username: r for r in queue_health(30, now=NOW).reviewers}

    cora = reviewers["cora"]
    assert (cora.votes, cora.approvals, cora.rejections) == (3, 2, 1)
    assert cora.approve_rate == pytest.approx(2 / 3)
    assert cora.median_review_seconds == 65
    assert reviewers["quinn"].median_review_seconds is None
    assert not cora.rubber_stamping and not reviewers["quinn"].rubber_stamping


def vote_many(project, user, count, *, seconds, rejections=0):
    for n in range(count):
        decision = "reject" if n < rejections else "approve"
        decided_after(ask(project, now=DAY_AGO), user, 100, decision, review_seconds=seconds)


def test_a_reviewer_approving_nearly_all_of_ten_in_seconds_is_flagged(project, refunds_policy):
    vote_many(project, make_person("stamp", "reviewer", "reviewers-l1"), 10, seconds=4)
    vote_many(project, make_person("few", "reviewer", "reviewers-l1"), 9, seconds=4)
    vote_many(
        project, make_person("picky", "reviewer", "reviewers-l1"), 10, seconds=4, rejections=1
    )
    vote_many(project, make_person("reader", "reviewer", "reviewers-l1"), 10, seconds=12)

    health = queue_health(30, now=NOW)

    assert [r.username for r in health.rubber_stampers] == ["stamp"]
    assert health.reviewers[0].username == "stamp"  # flagged reviewers first


def test_the_health_page_shows_the_figures_and_warns_of_rubber_stamping(
    client_as, project, refunds_policy
):
    vote_many(project, make_person("stamp", "reviewer", "reviewers-l1"), 10, seconds=3)

    response = client_as("viewer").get(reverse("approval-health"))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="rubber-stamp-warning"' in html
    assert "<strong>stamp</strong> approved 100% of 10 requests" in html
    assert 'id="chart-outcomes-per-day"' in html and 'id="chart-time-by-level"' in html
    assert "rubber-stamping?" in html


def test_no_warning_without_a_rubber_stamper(client_as, history):
    html = client_as("viewer").get(reverse("approval-health")).content.decode()

    assert 'id="rubber-stamp-warning"' not in html
    assert "lena" in html


def test_the_window_is_chosen_in_the_address(client_as, history):
    client = client_as("viewer")

    week = client.get(reverse("approval-health"), {"window": "90d"}).context["health"]
    bad = client.get(reverse("approval-health"), {"window": "1y"}).context

    assert week.closed == 8  # the request decided 40 days ago counts in 90 days
    assert bad["days"] == 30


def test_outcomes_per_day_count_each_kind(history):
    health = queue_health(30, now=NOW)

    totals = sum(health.per_day.values(), start=Counter())
    assert dict(totals) == {"approved": 3, "edited": 1, "rejected": 1, "expired": 1, "cancelled": 1}


def test_anonymous_is_sent_to_log_in_and_an_outsider_refused(client, client_as, db):
    assert client.get(reverse("approval-health"))["Location"].startswith("/login/")
    assert client_as("outsider").get(reverse("approval-health")).status_code == 403
