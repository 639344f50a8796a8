"""The sweeper (reminders, escalations, expiry) and its auditor, with frozen time."""

import json
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from approvals import engine
from approvals.models import ApprovalEvent, ApprovalRequest, EscalationLevel
from approvals.tasks import audit_approvals, sweep_approvals
from cockpit import webhooks
from cockpit.models import AlertEvent, WebhookDelivery
from tests.approvals.builders import ask, chain, make_reviewer, policy

Status = ApprovalRequest.Status
T0 = timezone.now().replace(microsecond=0)


def at(minutes: float):
    return T0 + timedelta(minutes=minutes)


def kinds(request):
    return list(request.events.order_by("id").values_list("kind", flat=True))


@pytest.fixture
def refunds(project):
    return policy(chain(minutes=(10, 10, 10, 10)))


@pytest.mark.django_db
def test_it_reminds_at_half_time_then_escalates_after_the_level_deadline(project, refunds):
    request = ask(project, now=T0)

    assert engine.sweep(now=at(4)) == {"reminded": 0, "escalated": 0, "expired": 0}
    assert engine.sweep(now=at(5)) == {"reminded": 1, "escalated": 0, "expired": 0}
    assert engine.sweep(now=at(6))["reminded"] == 0  # once per level
    assert engine.sweep(now=at(10)) == {"reminded": 0, "escalated": 1, "expired": 0}

    request.refresh_from_db()
    assert request.level == 2
    assert request.level_due_at == at(20) and request.remind_at == at(15)
    assert [k for k in kinds(request) if k != "notified"] == ["created", "reminded", "escalated"]


@pytest.mark.django_db
def test_after_the_last_level_the_request_expires_as_a_denial(project, refunds):
    request = ask(project, now=T0)

    for minute in range(1, 45):
        engine.sweep(now=at(minute))

    request.refresh_from_db()
    assert request.status == Status.EXPIRED and request.level == 4
    assert request.decision == "reject" and "denial" in request.comment
    events = [k for k in kinds(request) if k != "notified"]
    assert events.count("escalated") == 3 and events.count("reminded") == 4
    assert events[-1] == "expired"


@pytest.mark.django_db
def test_a_decision_after_expiry_is_recorded_and_ignored(project, refunds):
    request = ask(project, now=T0)
    for minute in (10, 20, 30, 40):
        engine.sweep(now=at(minute))

    with pytest.raises(engine.ApprovalError) as late:
        engine.do_decide(request.pk, make_reviewer("rui", 4), "approve",
                         seen_sha256=request.arguments_sha256)  # fmt: skip

    assert late.value.status == 409 and "expired" in str(late.value)
    request.refresh_from_db()
    assert request.status == Status.EXPIRED
    assert kinds(request)[-1] == "late_decision_ignored"


@pytest.mark.django_db
def test_a_sweep_leaves_decided_and_cancelled_requests_alone(project, refunds):
    decided = ask(project, now=T0)
    engine.do_decide(decided.pk, make_reviewer("lena", 1), "approve",
                     seen_sha256=decided.arguments_sha256)  # fmt: skip
    cancelled = engine.do_cancel(ask(project, now=T0))

    assert engine.sweep(now=at(60)) == {"reminded": 0, "escalated": 0, "expired": 0}
    assert ApprovalRequest.objects.get(pk=decided.pk).status == Status.APPROVED
    assert ApprovalRequest.objects.get(pk=cancelled.pk).status == Status.CANCELLED


@pytest.mark.django_db
def test_levels_notify_by_signed_slack_compatible_webhook_and_email(
    project, refunds, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    EscalationLevel.objects.filter(chain=refunds.chain, number=2).update(
        webhook_url="https://hooks.example.com/l2", webhook_secret="s3cret",
        email_to="l2@example.com, lead@example.com",
    )  # fmt: skip
    request = ask(project, now=T0)

    with (
        mock.patch.object(webhooks.deliver_webhook, "delay") as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        engine.sweep(now=at(10))

    delivery = WebhookDelivery.objects.get()
    assert delivery.topic == f"approval:{request.pk}:escalated:L2"
    queued.assert_called_once_with(delivery.pk)
    with mock.patch("cockpit.webhooks.post_json", return_value=200) as post:
        assert webhooks.deliver_webhook.run(delivery.pk) == "delivered"
    url, body, headers, _ = post.call_args.args
    assert url == "https://hooks.example.com/l2"
    assert json.loads(body)["text"].startswith("Escalated to L2: approval needed — refund-bot")
    timestamp = headers[webhooks.TIMESTAMP_HEADER]
    assert headers[webhooks.SIGNATURE_HEADER] == webhooks.sign("s3cret", timestamp, body)
    assert [m.to for m in mail.outbox] == [["l2@example.com", "lead@example.com"]]
    assert "refund-bot wants to refund (4,000.00 USD)" in mail.outbox[0].body


@pytest.mark.django_db
def test_the_auditor_alerts_while_requests_sit_past_due_and_resolves_after(project, refunds):
    request = ask(project, now=T0)

    assert engine.audit(now=at(10)) == 0  # at the deadline: the sweeper's turn
    assert engine.audit(now=at(12)) == 1
    assert engine.audit(now=at(12.5)) == 1
    alert = AlertEvent.objects.get()
    assert alert.kind == "approvals" and alert.severity == "page" and alert.resolved_at is None
    assert "is the sweeper" in alert.summary

    engine.sweep(now=at(12))
    request.refresh_from_db()
    assert engine.audit(now=at(13)) == 0
    alert.refresh_from_db()
    assert alert.resolved_at == at(13)


@pytest.mark.django_db
def test_the_beat_tasks_run_one_pass_each(project, refunds):
    ask(project, now=timezone.now() - timedelta(minutes=11))

    assert sweep_approvals() == {"reminded": 0, "escalated": 1, "expired": 0}
    assert audit_approvals() == 0


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_at_once_escalate_each_level_exactly_once(project, refunds):
    requests = [ask(project, now=T0) for _ in range(30)]
    ApprovalRequest.objects.update(remind_at=None, next_action_at=at(10))

    results = at_once(lambda: engine.sweep(now=at(10)), lambda: engine.sweep(now=at(10)))

    assert sum(r["escalated"] for r in results) == 30
    assert set(ApprovalRequest.objects.values_list("level", flat=True)) == {2}
    escalations = ApprovalEvent.objects.filter(kind="escalated")
    assert escalations.count() == 30
    assert {e.request_id for e in escalations} == {r.pk for r in requests}
    # A late third pass (a redelivered task) finds nothing due.
    assert engine.sweep(now=at(10)) == {"reminded": 0, "escalated": 0, "expired": 0}


def at_once(*actions) -> list:
    """Run the actions on threads of their own, released together; their results in order
    (an ApprovalError counts as its HTTP status)."""
    barrier = threading.Barrier(len(actions))
    results = [None] * len(actions)

    def run(position, action):
        barrier.wait()
        try:
            results[position] = action()
        except engine.ApprovalError as error:
            results[position] = error.status
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def deciding(request, reviewer, decision="approve"):
    sha = request.arguments_sha256
    return lambda: (
        engine.do_decide(request.pk, reviewer, decision, comment="no", seen_sha256=sha).message
    )


@pytest.mark.django_db(transaction=True)
def test_a_decision_racing_expiry_leaves_exactly_one_outcome(project, refunds):
    reviewer = make_reviewer("rui", 4)
    for _ in range(10):
        request = ask(project, now=T0)
        ApprovalRequest.objects.filter(pk=request.pk).update(
            level=4, remind_at=None, next_action_at=at(40), level_due_at=at(40)
        )

        decided, swept = at_once(
            deciding(request, reviewer), lambda: engine.sweep(now=at(41))["expired"]
        )

        request.refresh_from_db()
        if request.status == Status.APPROVED:
            assert (decided, swept) == ("Request approved.", 0)
        else:
            assert request.status == Status.EXPIRED and (decided, swept) == (409, 1)
            assert kinds(request)[-1] == "late_decision_ignored"


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_deciding_at_once_one_wins_the_other_gets_409(project, refunds):
    first, second = make_reviewer("lena", 1), make_reviewer("omar", 1)
    for _ in range(10):
        request = ask(project, now=T0)

        approved, rejected = at_once(deciding(request, first), deciding(request, second, "reject"))

        request.refresh_from_db()
        assert sorted(map(str, (approved, rejected))) == ["409", f"Request {request.status}."]
        winner = first if request.status == Status.APPROVED else second
        assert request.decided_by == winner
