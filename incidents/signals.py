"""Signal receivers that feed incidents from the rest of the cockpit without it knowing:
alert episodes (auto-open, alert firings), releases, interventions and approval events of the
agents of open incidents.

Every receiver defers its work to after the sender's commit, and never lets a failure of its
own reach the sender: ingest, alert evaluation and interventions must not break because an
incident could not be updated.
"""

from __future__ import annotations

import logging

from django.db import transaction

from incidents import actions

logger = logging.getLogger(__name__)


def _after_commit(work, *args) -> None:
    def run():
        try:
            work(*args)
        except Exception:  # noqa: BLE001 - the sender's change stands; log ours
            logger.exception("Incidents could not handle %s", work.__name__)

    transaction.on_commit(run)


def alert_saved(sender, instance, created, **kwargs) -> None:
    if created:
        _after_commit(alert_opened, instance.pk)


def alert_opened(alert_id: int) -> None:
    from cockpit.models import AlertEvent

    alert = AlertEvent.objects.select_related("project", "agent", "budget").get(pk=alert_id)
    opened = actions.open_from_alert(alert)
    if alert.agent_id:
        for incident in actions.incidents_watching(alert.agent_id, alert.opened_at):
            if opened is not None and incident.pk == opened.pk:
                continue
            with transaction.atomic():
                if actions.record_alert(incident, alert) is not None:
                    actions.broadcast(incident, actions.TIMELINE)


def release_saved(sender, instance, created, **kwargs) -> None:
    if created:
        _after_commit(release_created, instance.pk)


def release_created(release_id: int) -> None:
    from traces.models import ReleaseMarker

    release = ReleaseMarker.objects.select_related("agent").get(pk=release_id)
    for incident in actions.incidents_watching(release.agent_id, release.at):
        with transaction.atomic():
            if actions.record_release(incident, release) is not None:
                actions.broadcast(incident, actions.TIMELINE)


def intervention_saved(sender, instance, created, **kwargs) -> None:
    if created:
        _after_commit(intervention_created, instance.pk)


def intervention_created(intervention_id: int) -> None:
    from cockpit.models import Intervention

    intervention = Intervention.objects.select_related("agent", "user").get(pk=intervention_id)
    for incident in actions.incidents_watching(intervention.agent_id, intervention.at):
        with transaction.atomic():
            if actions.record_intervention(incident, intervention) is not None:
                actions.broadcast(incident, actions.TIMELINE, actions.SIDE)


def approval_changed(sender, approval, event, **kwargs) -> None:
    """approvals.engine.approval_changed is sent after commit already."""
    try:
        if not approval.agent_id:
            return
        at = (
            approval.created_at
            if event == "created"
            else approval.decided_at or approval.created_at
        )
        for incident in actions.incidents_watching(approval.agent_id, at):
            with transaction.atomic():
                if actions.record_approval(incident, approval, event) is not None:
                    actions.broadcast(incident, actions.TIMELINE)
    except Exception:  # noqa: BLE001 - the decision stands; log ours
        logger.exception("Incidents could not record approval event %s", event)


def connect() -> None:
    from django.db.models.signals import post_save

    from cockpit.models import AlertEvent, Intervention
    from traces.models import ReleaseMarker

    post_save.connect(alert_saved, sender=AlertEvent, dispatch_uid="incidents-alert")
    post_save.connect(release_saved, sender=ReleaseMarker, dispatch_uid="incidents-release")
    post_save.connect(intervention_saved, sender=Intervention, dispatch_uid="incidents-pause")
    try:
        from approvals.engine import approval_changed as approval_signal
    except ImportError:
        return  # the approvals app has no engine yet
    approval_signal.connect(approval_changed, dispatch_uid="incidents-approval")
