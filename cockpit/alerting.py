"""Celery tasks that evaluate SLO burn rates and budgets every minute, and the live refresh of
pages showing alerts. Beat's entries for them live in cockpit/celery.py.

Each evaluation is idempotent: running it twice for the same minute (two beat processes, a
redelivered task) opens and resolves each episode once.
"""

from __future__ import annotations

from celery import shared_task

from cockpit import realtime, webhooks  # noqa: F401 - registers deliver_webhook with the worker
from cockpit.budgets import evaluate_budgets
from cockpit.models import AlertEvent
from cockpit.slo import evaluate_slos

# Pages that list alerts re-fetch these parts (they carry hx-get) when an alert opens or closes.
FLEET_ALERTS_TARGET = "fleet-live"
AGENT_ALERTS_TARGET = "agent-alerts"


@shared_task(ignore_result=True, expires=55)
def evaluate_alerts() -> dict:
    """One pass: SLO burn-rate alerts, then budgets (which may pause agents)."""
    return {"slos": evaluate_slos(), "budgets": evaluate_budgets()}


def broadcast_alerts(event: AlertEvent) -> None:
    realtime.send_refresh("fleet", FLEET_ALERTS_TARGET)
    if event.agent_id:
        realtime.send_refresh(f"agent.{event.agent_id}", AGENT_ALERTS_TARGET)
