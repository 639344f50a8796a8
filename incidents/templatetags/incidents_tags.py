"""Template helpers of the incident pages, and the incidents fragment other pages include
(the run page lists the incidents its run is linked to)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template

from cockpit.roles import COMMANDER, has_role
from incidents.models import Incident, TraceLink

register = template.Library()


@register.filter
def span(delta) -> str:
    """A duration as people say it: "45 s", "12 min", "3 h 05 min", "2 d 4 h"; "—" if None."""
    if delta is None:
        return "—"
    if not isinstance(delta, timedelta):
        delta = timedelta(minutes=float(delta))
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "—"
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


@register.filter
def iso(value):
    """An ISO 8601 string (as stored in JSON) back to a datetime, for the date filter."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


@register.inclusion_tag("incidents/_run_incidents.html", takes_context=True)
def run_incidents(context, run):
    """The incidents a run is linked to, for the run page's header, and for commanders a form
    to link it to an open incident. Renders nothing when there is neither."""
    links = list(
        TraceLink.objects.filter(run=run)
        .select_related("incident")
        .order_by("-incident__detected_at")[:10]
    )
    request = context.get("request")
    can_command = request is not None and has_role(request.user, COMMANDER)
    linked = {link.incident_id for link in links}
    open_incidents = []
    if can_command:
        open_incidents = [
            incident
            for incident in Incident.objects.open().filter(project_id=run.project_id)[:20]
            if incident.pk not in linked
        ]
    return {
        "run": run,
        "links": links,
        "open_incidents": open_incidents,
        "relations": TraceLink.Relation.choices,
        "request": request,
    }
