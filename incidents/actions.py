"""Incident mutations. Each do_* function is the one place its change happens — views, signal
receivers, the demo and tests all call it — and fans out the same way: the rows, a typed
timeline event, and a live refresh of the incident's page (and the incidents list) once the
transaction commits.

`user` is the person acting. Views check roles before calling; these functions trust them.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import capfirst

from cockpit import realtime
from cockpit.interventions import InterventionError, can_intervene, do_pause_agent
from cockpit.models import AlertEvent, Budget, Intervention
from cockpit.roles import COMMANDER, has_role
from incidents import blast
from incidents.models import (
    ActionItem,
    AutoOpenRule,
    FailureClass,
    Incident,
    IncidentRole,
    Postmortem,
    Severity,
    Status,
    TimelineEvent,
    TraceLink,
    TraceQuery,
)
from traces.models import Agent, ReleaseMarker, Run

logger = logging.getLogger(__name__)

# The parts of the incident page that re-fetch themselves (they carry hx-get).
HEAD = "incident-head"
TIMELINE = "incident-timeline"
SIDE = "incident-side"
BLAST = "incident-blast"
LIST_ROWS = "incident-rows"
# Automatic events backfilled per kind when agents join an incident: the newest this many.
BACKFILL_LIMIT = 200

Kind = TimelineEvent.Kind


def topic(incident: Incident) -> str:
    return f"incident.{incident.pk}"


def broadcast(incident: Incident, *parts: str) -> None:
    """Ask open incident pages to re-fetch these parts, and the list to refresh, on commit.
    Call it once per change: each part is one websocket message to every viewer. What
    changes the side panel (links, agents) may change the blast radius too."""
    if SIDE in parts:
        parts = (*parts, BLAST)
    for part in dict.fromkeys(parts):
        realtime.send_refresh(topic(incident), part)
    realtime.send_refresh("incidents", LIST_ROWS)


def who(user) -> str:
    return user.get_username() if user is not None else "cockpit"


def record_event(
    incident: Incident,
    kind: str,
    text: str,
    *,
    actor=None,
    at: datetime | None = None,
    data: dict | None = None,
    source: str = "",
) -> TimelineEvent | None:
    """Add a timeline event (the caller broadcasts). An event with a `source` already recorded
    on this incident is not recorded again (returns None): automatic events are idempotent."""
    now = timezone.now()
    fields = {
        "kind": kind,
        "text": text,
        "actor": actor,
        "at": at or now,
        "recorded_at": now,
        "data": data or {},
    }
    if source:
        if incident.events.filter(source=source).exists():
            return None
        try:
            with transaction.atomic():
                event = TimelineEvent.objects.create(incident=incident, source=source, **fields)
        except IntegrityError:
            return None  # recorded meanwhile by a concurrent receiver
    else:
        event = TimelineEvent.objects.create(incident=incident, **fields)
    return event


# --- Opening ------------------------------------------------------------------------------


def do_open_incident(
    *,
    project,
    title: str,
    severity: int,
    user,
    summary: str = "",
    agents=(),
    failure_class: str = "",
    failure_chain=(),
    near_miss: bool = False,
    started_at: datetime | None = None,
    detected_at: datetime | None = None,
    alert_event: AlertEvent | None = None,
    links=(),
    opened_from: str = "",
) -> Incident:
    """Open an incident in TRIAGE. The opener, if a commander, takes the commander role.

    links: (run, span_id, relation) tuples to link at once; opened_from says where it was
    opened (a run, a span, an approval) for the first timeline event.
    """
    detected_at = detected_at or timezone.now()
    started_at = min(started_at or detected_at, detected_at)
    with transaction.atomic():
        incident = Incident.objects.create(
            project=project,
            title=title.strip()[:200],
            severity=severity,
            summary=summary,
            failure_class=failure_class,
            failure_chain=[step for step in failure_chain if step],
            near_miss=near_miss,
            started_at=started_at,
            detected_at=detected_at,
            alert_event=alert_event,
            created_by=user,
        )
        incident.agents.set(agents)
        if user is not None and has_role(user, COMMANDER):
            IncidentRole.objects.create(
                incident=incident,
                role=IncidentRole.Role.COMMANDER,
                user=user,
                started_at=detected_at,
                assigned_by=user,
            )
        origin = f" from {opened_from}" if opened_from else ""
        record_event(
            incident,
            Kind.STATUS,
            f"Opened{origin} as {incident.get_severity_display()} by {who(user)}.",
            actor=user,
            at=detected_at,
            data={"to": Status.TRIAGE},
        )
        for run, span_id, relation in links:
            _link(incident, run, relation=relation, user=user, span_id=span_id)
        sync_agent_events(incident)
        blast.refresh(incident)
        broadcast(incident, HEAD, TIMELINE, SIDE)
    return incident


def open_from_alert(event: AlertEvent) -> Incident | None:
    """Open the incident an alert rule asks for; None when no enabled rule matches or the
    episode already has one. Safe to call twice, or from two workers at once."""
    if event.kind not in AutoOpenRule.KINDS:
        return None
    rule = matching_rule(event)
    if rule is None or not rule.enabled:
        return None
    if Incident.objects.filter(alert_event=event).exists():
        return None
    failure_class = rule.failure_class or (
        FailureClass.COST if event.kind == AlertEvent.Kind.BUDGET_BREACH else ""
    )
    try:
        with transaction.atomic():
            return do_open_incident(
                project=event.project,
                title=f"{capfirst(event.get_kind_display())}: {event.summary}",
                severity=rule.severity,
                user=None,
                summary=f"Opened automatically by the alert rule “{rule}”.\n\n{event.summary}",
                agents=alert_agents(event),
                failure_class=failure_class,
                started_at=event.opened_at,
                detected_at=event.opened_at,
                alert_event=event,
                opened_from="an alert",
            )
    except IntegrityError:
        return None  # another worker opened it first (one incident per alert episode)


def matching_rule(event: AlertEvent) -> AutoOpenRule | None:
    """The agent's own rule for this kind of alert, else the project's."""
    rules = AutoOpenRule.objects.filter(project_id=event.project_id, alert_kind=event.kind)
    if event.agent_id:
        own = rules.filter(agent_id=event.agent_id).first()
        if own is not None:
            return own
    return rules.filter(agent__isnull=True).first()


def alert_agents(event: AlertEvent) -> list[Agent]:
    if event.agent_id:
        return [event.agent]
    if event.budget_id and event.budget.scope == Budget.Scope.TEAM:
        return list(event.budget.agents())
    return []


# --- Status, severity, details ----------------------------------------------------------------


def do_transition(
    incident: Incident, new_status: str, *, user, note: str, at: datetime | None = None
) -> Incident:
    """Move to new_status at `at` (default now). Raises ValidationError naming the field."""
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        at = at or timezone.now()
        note = (note or "").strip()
        locked.check_transition(new_status, at, note)
        old = locked.status
        locked.apply_transition(new_status, at)
        locked.updated_at = timezone.now()
        locked.save()
        record_event(
            locked,
            Kind.STATUS,
            note,
            actor=user,
            at=at,
            data={"from": old, "to": new_status},
        )
        broadcast(locked, HEAD, TIMELINE, SIDE)
    return locked


def do_set_severity(incident: Incident, severity: int, *, user, note: str) -> Incident:
    note = (note or "").strip()
    if not note:
        raise ValidationError({"note": "Say why: a note is required with every change."})
    if severity not in Severity.values:
        raise ValidationError({"severity": "Choose SEV1, SEV2, SEV3 or SEV4."})
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        if locked.severity == severity:
            raise ValidationError({"severity": f"It is {locked.get_severity_display()} already."})
        old = locked.get_severity_display()
        locked.severity = severity
        locked.updated_at = timezone.now()
        locked.save(update_fields=["severity", "updated_at"])
        record_event(
            locked,
            Kind.SEVERITY,
            note,
            actor=user,
            data={"from": old, "to": locked.get_severity_display()},
        )
        broadcast(locked, HEAD, TIMELINE, SIDE)
    return locked


def do_update_details(incident: Incident, *, user, **fields) -> Incident:
    """Change title, summary, failure_class, failure_chain, near_miss and/or agents."""
    agents = fields.pop("agents", None)
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        changed = [name for name, value in fields.items() if getattr(locked, name) != value]
        for name in changed:
            setattr(locked, name, fields[name])
        added: list[Agent] = []
        if agents is not None:
            before = set(locked.agents.values_list("pk", flat=True))
            after = {agent.pk for agent in agents}
            if before != after:
                changed.append("agents")
                locked.agents.set(agents)
                added = [agent for agent in agents if agent.pk not in before]
        if not changed:
            return locked
        locked.updated_at = timezone.now()
        locked.save()
        labels = ", ".join(name.replace("_", " ") for name in changed)
        record_event(locked, Kind.EDIT, f"Changed {labels}.", actor=user, data={"fields": changed})
        if added:
            sync_agent_events(locked)
        broadcast(locked, HEAD, TIMELINE, SIDE)
    return locked


# --- Timeline -----------------------------------------------------------------------------------


def do_add_note(incident: Incident, *, user, text: str) -> TimelineEvent:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "Write something first."})
    if len(text) > 5000:
        raise ValidationError({"text": "At most 5000 characters."})
    with transaction.atomic():
        event = record_event(incident, Kind.NOTE, text, actor=user)
        broadcast(incident, TIMELINE)
    return event


def do_star(event: TimelineEvent, *, user, starred: bool) -> TimelineEvent:
    with transaction.atomic():
        TimelineEvent.objects.filter(pk=event.pk).update(starred=starred)
        event.starred = starred
        broadcast(event.incident, TIMELINE)
    return event


# --- Roles ----------------------------------------------------------------------------------------


def do_assign_role(incident: Incident, *, role: str, person, by) -> IncidentRole:
    """Give `person` a role. For a role held by one person at a time, the current holder's
    turn ends: a handoff, recorded as such."""
    if role not in IncidentRole.Role.values:
        raise ValidationError({"role": "Choose commander, scribe, liaison or subject expert."})
    if role == IncidentRole.Role.COMMANDER and not has_role(person, COMMANDER):
        raise ValidationError({"person": f"{person} does not hold the commander role."})
    now = timezone.now()
    label = IncidentRole.Role(role).label
    with transaction.atomic():
        Incident.objects.select_for_update().get(pk=incident.pk)
        current = list(incident.roles.filter(role=role, ended_at__isnull=True))
        if any(holder.user_id == person.pk for holder in current):
            raise ValidationError({"person": f"{person} is {label} already."})
        previous = None
        if role in IncidentRole.SINGLE and current:
            previous = current[0]
            IncidentRole.objects.filter(pk=previous.pk).update(ended_at=now)
        assignment = IncidentRole.objects.create(
            incident=incident, role=role, user=person, started_at=now, assigned_by=by
        )
        if previous is not None:
            text = f"{label.capitalize()} handed off from {previous.user} to {person}."
        else:
            text = f"{person} is now {label}."
        record_event(
            incident,
            Kind.ROLE,
            text,
            actor=by,
            at=now,
            data={
                "role": role,
                "to": person.get_username(),
                "from": previous.user.get_username() if previous else "",
            },
        )
        broadcast(incident, HEAD, TIMELINE, SIDE)
    return assignment


def do_end_role(assignment: IncidentRole, *, by) -> None:
    now = timezone.now()
    with transaction.atomic():
        ended = IncidentRole.objects.filter(pk=assignment.pk, ended_at__isnull=True).update(
            ended_at=now
        )
        if not ended:
            raise ValidationError({"role": "That role has ended already."})
        record_event(
            assignment.incident,
            Kind.ROLE,
            f"{assignment.user} is no longer {assignment.get_role_display()}.",
            actor=by,
            at=now,
            data={"role": assignment.role, "from": assignment.user.get_username()},
        )
        broadcast(assignment.incident, HEAD, TIMELINE, SIDE)


# --- Trace links and queries ------------------------------------------------------------------


def do_link_run(
    incident: Incident, run: Run, *, relation: str, user, span_id: str = "", note: str = ""
) -> TraceLink:
    if run.project_id != incident.project_id:
        raise ValidationError({"trace_id": "That run belongs to another project."})
    with transaction.atomic():
        link = _link(incident, run, relation=relation, user=user, span_id=span_id, note=note)
        blast.refresh(incident)
        broadcast(incident, TIMELINE, SIDE)
    return link


def _link(incident, run, *, relation, user, span_id="", note="") -> TraceLink:
    if relation not in TraceLink.Relation.values:
        raise ValidationError({"relation": "Choose trigger, affected or evidence."})
    link, created = TraceLink.objects.update_or_create(
        incident=incident,
        run=run,
        defaults={"relation": relation, "span_id": span_id, "note": note, "created_by": user},
    )
    agent = run.agent
    what = f"Linked run {run.name or run.trace_id} ({agent.name if agent else 'no agent'})"
    record_event(
        incident,
        Kind.TRACE,
        f"{what} as {relation}." if created else f"{what}: now {relation}.",
        actor=user,
        data={
            "trace_id": run.trace_id,
            "span_id": span_id,
            "relation": relation,
            "project": incident.project.name,
            "run_started_at": run.started_at.isoformat(),
        },
    )
    if agent is not None and relation != TraceLink.Relation.EVIDENCE:
        _add_agent(incident, agent)
    return link


def _add_agent(incident: Incident, agent: Agent) -> None:
    """A run that caused or suffered harm makes its agent one of the incident's agents."""
    if not incident.agents.filter(pk=agent.pk).exists():
        incident.agents.add(agent)
        sync_agent_events(incident)


def do_unlink(link: TraceLink, *, user) -> None:
    incident = link.incident
    with transaction.atomic():
        link.delete()
        record_event(
            incident,
            Kind.TRACE,
            f"Unlinked run {link.run.name or link.run.trace_id}.",
            actor=user,
            data={"trace_id": link.run.trace_id, "relation": "unlinked"},
        )
        blast.refresh(incident)
        broadcast(incident, TIMELINE, SIDE)


def do_add_query(incident: Incident, *, user, **fields) -> TraceQuery:
    with transaction.atomic():
        query = TraceQuery.objects.create(incident=incident, created_by=user, **fields)
        matched = Run.objects.filter(project_id=incident.project_id).filter(
            blast.query_filter(query, incident.window()[1])
        )
        count = matched.count()
        record_event(
            incident,
            Kind.TRACE,
            f"Linked {count} run{'s' * (count != 1)} as {query.relation} by query: "
            f"{query.describe()}.",
            actor=user,
            data={"query": query.describe(), "relation": query.relation, "runs": count},
        )
        if query.relation != TraceLink.Relation.EVIDENCE:
            _add_agent(incident, query.agent)
        blast.refresh(incident)
        broadcast(incident, TIMELINE, SIDE)
    return query


def do_remove_query(query: TraceQuery, *, user) -> None:
    incident = query.incident
    with transaction.atomic():
        query.delete()
        record_event(
            incident,
            Kind.TRACE,
            f"Removed the query: {query.describe()}.",
            actor=user,
            data={"query": query.describe(), "relation": "unlinked"},
        )
        blast.refresh(incident)
        broadcast(incident, TIMELINE, SIDE)


# --- Acting on agents ------------------------------------------------------------------------------


def do_pause_agents(incident: Incident, *, user, reason: str) -> tuple[list[Agent], list[str]]:
    """Pause every active agent of the incident. Returns (paused, reasons others were not).

    The pause goes through cockpit.interventions, audited there too. A commander without the
    operator role acts for the incident: the audit row names the cockpit and the reason names
    the person.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why: a reason is required."})
    acting = user if can_intervene(user) else None
    full_reason = f"Incident #{incident.pk}: {reason}"
    if acting is None:
        full_reason += f" (by {who(user)})"
    paused, skipped = [], []
    with transaction.atomic():
        for agent in incident.agents.order_by("name"):
            try:
                intervention = do_pause_agent(agent, acting, full_reason[:1000])
            except InterventionError as error:
                skipped.append(str(error))
                continue
            paused.append(agent)
            record_event(
                incident,
                Kind.INTERVENTION,
                f"Paused {agent.name}: {reason}",
                actor=user,
                at=intervention.at,
                data={"agent": agent.name, "action": "pause"},
                source=f"intervention:{intervention.pk}",
            )
        if not paused:
            raise ValidationError({"agents": "No active agent to pause. " + " ".join(skipped)})
        broadcast(incident, TIMELINE, SIDE)
    return paused, skipped


def do_freeze_approvals(incident: Incident, *, user, reason: str) -> list:
    """Reject every pending approval request of the incident's agents, citing the incident."""
    from approvals.engine import do_freeze_agents

    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why: a reason is required."})
    agents = list(incident.agents.order_by("name"))
    if not agents:
        raise ValidationError({"agents": "The incident has no agents."})
    with transaction.atomic():
        frozen = do_freeze_agents(agents, reason=f"Incident #{incident.pk}: {reason}", actor=user)
        count = len(frozen)
        record_event(
            incident,
            Kind.ACTION,
            f"Froze {count} pending approval{'s' * (count != 1)} of "
            f"{', '.join(a.name for a in agents)}: {reason}",
            actor=user,
            data={"action": "freeze", "approvals": [request.pk for request in frozen]},
        )
        broadcast(incident, TIMELINE, SIDE)
    return frozen


# --- Postmortem and action items ----------------------------------------------------------------


def do_save_postmortem(incident: Incident, *, user, body: str) -> Postmortem:
    if len(body) > 200_000:
        raise ValidationError({"body": "At most 200,000 characters."})
    with transaction.atomic():
        postmortem, created = Postmortem.objects.select_for_update().get_or_create(
            incident=incident, defaults={"body": body, "updated_by": user}
        )
        if not created:
            if postmortem.status == Postmortem.Status.PUBLISHED:
                raise ValidationError(
                    {"body": "A published postmortem is read-only: send it back to review first."}
                )
            postmortem.body = body
            postmortem.updated_by = user
            postmortem.updated_at = timezone.now()
            postmortem.save()
        else:
            record_event(incident, Kind.POSTMORTEM, "Started the postmortem.", actor=user)
        broadcast(incident, TIMELINE, SIDE)
    return postmortem


def do_set_postmortem_status(postmortem: Postmortem, status: str, *, user) -> Postmortem:
    with transaction.atomic():
        locked = Postmortem.objects.select_for_update().get(pk=postmortem.pk)
        if status not in Postmortem.TRANSITIONS[locked.status]:
            raise ValidationError(
                {"status": f"A postmortem {locked.get_status_display()} cannot move to {status}."}
            )
        if status == Postmortem.Status.PUBLISHED and not locked.body.strip():
            raise ValidationError({"status": "Write the postmortem before publishing it."})
        old = locked.get_status_display()
        locked.status = status
        if status == Postmortem.Status.PUBLISHED:
            locked.published_at, locked.published_by = timezone.now(), user
        locked.save()
        record_event(
            locked.incident,
            Kind.POSTMORTEM,
            f"Postmortem: {old} → {locked.get_status_display()}.",
            actor=user,
            data={"from": old, "to": status},
        )
        broadcast(locked.incident, HEAD, TIMELINE, SIDE)
    return locked


def do_add_action_item(incident: Incident, *, user, **fields) -> ActionItem:
    if not fields.get("due_date"):
        fields["due_date"] = ActionItem.default_due_date(incident.severity)
    with transaction.atomic():
        item = ActionItem.objects.create(incident=incident, **fields)
        owner = f" (owner {item.owner})" if item.owner_id else ""
        record_event(
            incident,
            Kind.ACTION,
            f"Action item added: {item.title}{owner}, due {item.due_date:%Y-%m-%d}.",
            actor=user,
            data={"action_item": item.pk, "kind": item.kind},
        )
        broadcast(incident, TIMELINE, SIDE)
    return item


def do_set_action_item_status(item: ActionItem, status: str, *, user) -> ActionItem:
    if status not in ActionItem.Status.values:
        raise ValidationError({"status": "Choose open, in progress, done or won't do."})
    with transaction.atomic():
        item.status = status
        finished = status in (ActionItem.Status.DONE, ActionItem.Status.WONT_DO)
        item.completed_at = timezone.now() if finished else None
        item.save(update_fields=["status", "completed_at"])
        record_event(
            item.incident,
            Kind.ACTION,
            f"Action item “{item.title}” is now {item.get_status_display()}.",
            actor=user,
            data={"action_item": item.pk, "status": status},
        )
        broadcast(item.incident, TIMELINE, SIDE)
    return item


# --- Automatic events of the affected agents --------------------------------------------------


def sync_agent_events(incident: Incident) -> int:
    """Record the releases, interventions, alerts and approvals of the incident's agents that
    fall in its window and are not on the timeline yet. Returns how many were added."""
    start, end = incident.window()
    agent_ids = list(incident.agents.values_list("pk", flat=True))
    if not agent_ids:
        return 0
    added = 0
    releases = ReleaseMarker.objects.filter(agent_id__in=agent_ids, at__gte=start, at__lte=end)
    for release in releases.select_related("agent").order_by("-at")[:BACKFILL_LIMIT]:
        added += record_release(incident, release) is not None
    interventions = Intervention.objects.filter(agent_id__in=agent_ids, at__gte=start, at__lte=end)
    for intervention in interventions.select_related("agent", "user").order_by("-at")[
        :BACKFILL_LIMIT
    ]:
        added += record_intervention(incident, intervention) is not None
    alerts = AlertEvent.objects.filter(
        agent_id__in=agent_ids, opened_at__gte=start, opened_at__lte=end
    )
    for alert in alerts.order_by("-opened_at")[:BACKFILL_LIMIT]:
        added += record_alert(incident, alert) is not None
    approvals = approval_model()
    if approvals is not None:
        requests = approvals.objects.filter(
            agent_id__in=agent_ids, created_at__gte=start, created_at__lte=end
        ).select_related("agent", "decided_by")
        for request in requests.order_by("-created_at")[:BACKFILL_LIMIT]:
            added += record_approval(incident, request, "created") is not None
            if request.decided_at is not None:
                added += record_approval(incident, request, request.status) is not None
    return added


def approval_model():
    """approvals.models.ApprovalRequest, or None while the approvals app has no such model."""
    try:
        from approvals.models import ApprovalRequest
    except ImportError:
        return None
    return ApprovalRequest


def record_release(incident, release: ReleaseMarker):
    details = ", ".join(
        part
        for part in (
            f"model {release.model}" if release.model else "",
            f"prompt {release.prompt_version}" if release.prompt_version else "",
        )
        if part
    )
    return record_event(
        incident,
        Kind.RELEASE,
        f"{release.agent.name} released {release.version}" + (f" ({details})." if details else "."),
        at=release.at,
        data={"agent": release.agent.name, "version": release.version},
        source=f"release:{release.pk}",
    )


def record_intervention(incident, intervention: Intervention):
    done = {"pause": "paused", "resume": "resumed", "stop": "stopped", "override": "overridden"}
    return record_event(
        incident,
        Kind.INTERVENTION,
        f"{intervention.agent.name} {done.get(intervention.action, intervention.action)} by "
        f"{intervention.actor}: {intervention.reason}",
        actor=intervention.user,
        at=intervention.at,
        data={"agent": intervention.agent.name, "action": intervention.action},
        source=f"intervention:{intervention.pk}",
    )


def record_alert(incident, alert: AlertEvent):
    return record_event(
        incident,
        Kind.ALERT,
        f"{capfirst(alert.get_kind_display())}: {alert.summary}",
        at=alert.opened_at,
        data={"alert": alert.pk, "kind": alert.kind, "severity": alert.severity},
        source=f"alert:{alert.pk}",
    )


# Approval events worth a timeline line; "voted" counts once it decided the request.
APPROVAL_EVENTS = ("created", "approved", "rejected", "expired", "cancelled", "escalated")


def approval_event(request, event: str) -> str | None:
    """The timeline's name for an approvals.engine event, or None to leave it out."""
    if event == "voted" and request.status != "pending":
        return request.status
    return event if event in APPROVAL_EVENTS else None


def record_approval(incident, request, event: str):
    event = approval_event(request, event)
    if event is None:
        return None
    agent = request.agent.name if request.agent_id else "an agent"
    what = request.summary or request.action
    amount = (
        f", {request.amount:,.2f} {request.currency}".rstrip() if request.amount is not None else ""
    )
    source = f"approval:{request.pk}:{event}"
    if event == "created":
        text = f"{agent} asked for approval ({request.risk_tier} risk{amount}): {what}"
        at = request.created_at
    elif event == "escalated":
        text = f"Approval request #{request.pk} of {agent} escalated to L{request.level}: {what}"
        at = timezone.now()
        source += f":{request.level}"
    else:
        by = f" by {request.decided_by}" if request.decided_by_id else ""
        text = f"Approval request #{request.pk} of {agent} {event}{by}: {what}"
        if request.comment:
            text += f" — “{request.comment}”"
        at = request.decided_at or timezone.now()
    return record_event(
        incident,
        Kind.APPROVAL,
        text,
        at=at,
        data={"approval": request.pk, "event": event, "agent": agent},
        source=source,
    )


def incidents_watching(agent_id: int, at: datetime):
    """Incidents not yet resolved with this agent whose window includes `at`."""
    return [
        incident
        for incident in Incident.objects.open().with_agent(agent_id).distinct()
        if incident.window()[0] <= at
    ]
