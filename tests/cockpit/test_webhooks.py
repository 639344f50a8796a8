"""Alert webhooks: Slack-compatible, HMAC-signed, retried with exponential backoff.

Outbound HTTP is patched at its one choke point, cockpit.webhooks.post_json.
"""

import hashlib
import hmac
import json
from unittest import mock

import pytest
from celery.exceptions import Retry

from cockpit import webhooks
from cockpit.models import AlertEvent, Webhook, WebhookDelivery
from tests.cockpit.rollup_rows import NOW
from tests.factories import make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(project):
    return Webhook.objects.create(
        project=project, name="ops", url="https://hooks.example.com/T1", secret="s3cret"
    )


@pytest.fixture
def event(project):
    return AlertEvent.objects.create(
        kind="slo_fast_burn",
        severity="page",
        key="slo:1:slo_fast_burn",
        project=project,
        agent=make_agent(project, "refund-agent"),
        summary="refund-agent: success rate ≥ 99.00% is burning at 20.0×",
        opened_at=NOW,
    )


def test_a_delivery_is_slack_compatible_and_signed_over_timestamp_and_body(hook, event):
    (delivery,) = webhooks.notify(event)

    with mock.patch("cockpit.webhooks.post_json", return_value=200) as post:
        assert webhooks.attempt(delivery)

    url, body, headers, _timeout = post.call_args.args
    assert url == "https://hooks.example.com/T1"
    payload = json.loads(body)
    assert payload["text"].startswith("Firing: SLO fast burn — refund-agent")
    assert payload["blocks"][0]["type"] == "header"
    assert payload["alert"]["status"] == "firing" and payload["alert"]["agent"] == "refund-agent"
    timestamp = headers["X-Cockpit-Timestamp"]
    expected = hmac.new(b"s3cret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Cockpit-Signature"] == f"sha256={expected}"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)


def test_a_resolved_alert_says_resolved(hook, event):
    event.resolved_at = NOW
    body = json.loads(webhooks.notify(event)[0].body)

    assert body["text"].startswith("Resolved: ")
    assert body["alert"]["status"] == "resolved"


def test_only_active_hooks_of_the_project_or_of_every_project_are_notified(
    hook, event, other_project
):
    Webhook.objects.create(name="global", url="https://a.example/x", secret="s")
    Webhook.objects.create(name="off", url="https://b.example/x", secret="s", active=False)
    Webhook.objects.create(
        project=other_project, name="theirs", url="https://c.example/x", secret="s"
    )

    deliveries = webhooks.notify(event)

    assert sorted(d.webhook.name for d in deliveries) == ["global", "ops"]


def test_the_task_is_queued_only_after_commit(hook, event, django_capture_on_commit_callbacks):
    with mock.patch.object(webhooks.deliver_webhook, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            (delivery,) = webhooks.notify(event)
        assert delay.call_count == 0
        for callback in callbacks:
            callback()

    delay.assert_called_once_with(delivery.pk)


def test_a_failed_attempt_is_retried_with_exponential_backoff(hook, event):
    (delivery,) = webhooks.notify(event)
    countdowns = []

    def retry(countdown, exc):
        countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)

    with (
        mock.patch("cockpit.webhooks.post_json", side_effect=[503, OSError("refused"), 500]),
        mock.patch.object(webhooks.deliver_webhook, "retry", side_effect=retry),
    ):
        for _ in range(3):
            with pytest.raises(Retry):
                webhooks.deliver_webhook.run(delivery.pk)

    assert countdowns == [10, 20, 40]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 3)
    assert delivery.last_error == "HTTP 500"


def test_it_gives_up_after_the_last_attempt(hook, event):
    (delivery,) = webhooks.notify(event)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=webhooks.MAX_ATTEMPTS - 1)

    with mock.patch("cockpit.webhooks.post_json", return_value=500):
        assert webhooks.deliver_webhook.run(delivery.pk) == "failed"

    delivery.refresh_from_db()
    assert delivery.status == "failed"


def test_a_delivered_delivery_is_not_sent_again(hook, event):
    (delivery,) = webhooks.notify(event)
    with mock.patch("cockpit.webhooks.post_json", return_value=204) as post:
        webhooks.deliver_webhook.run(delivery.pk)
        assert webhooks.deliver_webhook.run(delivery.pk) == "gone"

    assert post.call_count == 1


def test_backoff_is_capped_at_an_hour():
    assert [webhooks.retry_delay(n) for n in (1, 2, 3)] == [10, 20, 40]
    assert webhooks.retry_delay(20) == 3600
