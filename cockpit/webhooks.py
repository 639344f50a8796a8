"""Alert notifications to webhooks: Slack-compatible JSON, signed, delivered with retries.

The body is what a Slack incoming webhook accepts ({"text", "blocks"}), plus an "alert" object
for machines. Every request carries

    X-Cockpit-Timestamp: <unix seconds>
    X-Cockpit-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

so a receiver can check both origin and freshness (reject old timestamps to stop replays).
Each (webhook, alert change) is a WebhookDelivery row sent by a Celery task that retries with
exponential backoff; all outbound HTTP goes through `post_json`, the one choke point tests patch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request

from celery import shared_task
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cockpit.models import AlertEvent, Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Cockpit-Signature"
TIMESTAMP_HEADER = "X-Cockpit-Timestamp"
TIMEOUT_SECONDS = 10
MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600


class DeliveryFailed(Exception):
    pass


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST body to url; returns the HTTP status. The one place the cockpit calls out."""
    request = urllib.request.Request(  # noqa: S310 - the URL was validated as http(s) on save
        url, data=body, headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def retry_delay(attempt: int) -> int:
    """Seconds to wait after failed attempt number `attempt` (1, 2, …): 10 s, 20 s, 40 s, …"""
    return min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS)


def message(event: AlertEvent) -> dict:
    """The Slack-compatible body for an alert that opened or resolved."""
    resolved = event.resolved_at is not None
    headline = ("Resolved: " if resolved else "Firing: ") + event.get_kind_display()
    where = event.agent.name if event.agent_id else event.project.name
    text = f"{headline} — {where}: {event.summary}"
    return {
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "plain_text", "text": event.summary}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "plain_text",
                        "text": f"{event.project.name} · {where} · opened "
                        f"{event.opened_at:%Y-%m-%d %H:%M UTC}",
                    }
                ],
            },
        ],
        "alert": {
            "id": event.pk,
            "kind": event.kind,
            "severity": event.severity,
            "status": "resolved" if resolved else "firing",
            "project": event.project.name,
            "agent": event.agent.name if event.agent_id else None,
            "summary": event.summary,
            "opened_at": event.opened_at.isoformat(),
            "resolved_at": event.resolved_at.isoformat() if resolved else None,
            "details": event.details,
        },
    }


def notify(event: AlertEvent) -> list[WebhookDelivery]:
    """Queue a delivery of `event` to every active webhook of its project (or of all)."""
    hooks = Webhook.objects.filter(active=True).filter(
        Q(project__isnull=True) | Q(project_id=event.project_id)
    )
    body = json.dumps(message(event), separators=(",", ":"))
    deliveries = [
        WebhookDelivery.objects.create(webhook=hook, alert_event=event, body=body) for hook in hooks
    ]
    for delivery in deliveries:
        # Sent once the alert is committed: a rolled-back alert is never announced.
        transaction.on_commit(lambda pk=delivery.pk: deliver_webhook.delay(pk))
    return deliveries


def queue_delivery(url: str, secret: str, payload: dict, topic: str) -> WebhookDelivery:
    """Send payload to a one-off target (signed, retried like alert deliveries) on commit."""
    body = json.dumps(payload, separators=(",", ":"), default=str)
    delivery = WebhookDelivery.objects.create(url=url, secret=secret, body=body, topic=topic)
    transaction.on_commit(lambda: deliver_webhook.delay(delivery.pk))
    return delivery


def attempt(delivery: WebhookDelivery, *, now=None) -> bool:
    """One delivery attempt, recorded on the row. True when the receiver answered 2xx."""
    body = delivery.body.encode()
    timestamp = str(int(time.time()))
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(delivery.signing_secret, timestamp, body),
        "User-Agent": "agent-cockpit-webhooks/1",
    }
    delivery.attempts += 1
    try:
        status = post_json(delivery.target_url, body, headers, TIMEOUT_SECONDS)
    except (OSError, ValueError) as error:
        delivery.last_status_code, delivery.last_error = None, str(error)[:500]
        ok = False
    else:
        delivery.last_status_code = status
        ok = 200 <= status < 300
        delivery.last_error = "" if ok else f"HTTP {status}"
    if ok:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = now or timezone.now()
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = WebhookDelivery.Status.FAILED
    delivery.save()
    return ok


@shared_task(bind=True, max_retries=MAX_ATTEMPTS - 1, acks_late=True)
def deliver_webhook(self, delivery_id: int) -> str:
    """Deliver one WebhookDelivery; on failure retry after retry_delay(attempts)."""
    delivery = (
        WebhookDelivery.objects.select_related("webhook")
        .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
        .first()
    )
    if delivery is None:
        return "gone"  # delivered already (a redelivered task), or given up
    if attempt(delivery):
        return "delivered"
    if delivery.status == WebhookDelivery.Status.FAILED:
        logger.warning("Webhook %s: giving up on delivery %s", delivery, delivery.pk)
        return "failed"
    raise self.retry(
        countdown=retry_delay(delivery.attempts), exc=DeliveryFailed(delivery.last_error)
    )
