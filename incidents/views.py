"""The incident pages: the list with metrics, opening one, the incident page and its actions,
the postmortem editor and export, and the action items across incidents.

Every page needs a cockpit role (viewers read); every change needs the commander role (admins
hold it too). Changes are POSTs answered with a redirect back to the page and a message; the
other people looking at the incident see it through the live refresh (incidents.actions).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cockpit.charts import figure_scripts
from cockpit.roles import COMMANDER, VIEWER, has_role, role_required
from incidents import actions, blast, charts, metrics, postmortem
from incidents.forms import (
    ActionItemForm,
    ActionItemStatusForm,
    DetailsForm,
    IncidentForm,
    LinkForm,
    ListFilterForm,
    NoteForm,
    PostmortemForm,
    PostmortemStatusForm,
    QueryForm,
    ReasonForm,
    RoleForm,
    RunLinkForm,
    SeverityForm,
    TransitionForm,
)
from incidents.models import (
    SEVERITY_CRITERIA,
    ActionItem,
    Incident,
    IncidentRole,
    Postmortem,
    Severity,
    Status,
    TimelineEvent,
    TraceLink,
    TraceQuery,
)
from traces.models import Agent, Project, Run, Span

LIST_LIMIT = 100
TIMELINE_KINDS = TimelineEvent.Kind


def _get_incident(pk: int) -> Incident:
    """The incident, with what the header needs loaded; 404 if there is none."""
    return get_object_or_404(
        Incident.objects.select_related("project", "alert_event", "created_by").prefetch_related(
            Prefetch("roles", IncidentRole.objects.select_related("user"))
        ),
        pk=pk,
    )


def _page(incident: Incident, anchor: str = "") -> HttpResponseRedirect:
    url = reverse("incident-detail", args=[incident.pk])
    return HttpResponseRedirect(f"{url}#{anchor}" if anchor else url)


def _report(request, error: ValidationError) -> None:
    for field, problems in error.message_dict.items():
        label = "" if field == "__all__" else field.replace("_", " ").capitalize() + ": "
        messages.error(request, f"{label}{problems[0]}")


def _form_errors(request, form) -> None:
    for field, problems in form.errors.items():
        label = "" if field == "__all__" else field.replace("_", " ").capitalize() + ": "
        messages.error(request, f"{label}{problems[0]}")


# --- List and metrics ---------------------------------------------------------------------------


def _filtered(request):
    data = request.GET.copy()
    if not data.get("period"):
        data["period"] = "90d"  # the default, shown as chosen
    form = ListFilterForm(data)
    incidents = Incident.objects.all()
    period = "90d"
    if form.is_valid():
        data = form.cleaned_data
        if data["status"] == "open":
            incidents = incidents.open()
        elif data["status"]:
            incidents = incidents.filter(status=data["status"])
        if data["severity"]:
            incidents = incidents.filter(severity=data["severity"])
        if data["failure_class"]:
            incidents = incidents.filter(failure_class=data["failure_class"])
        if data["agent"]:
            incidents = incidents.filter(agents__name=data["agent"]).distinct()
        period = data["period"] or period
    since = timezone.now() - timedelta(days=ListFilterForm.PERIODS[period])
    return form, incidents.filter(detected_at__gte=since), period, since


@require_GET
@role_required(VIEWER)
def incident_list(request):
    form, incidents, period, since = _filtered(request)
    rows = list(
        incidents.select_related("project")
        .prefetch_related("agents", Prefetch("roles", IncidentRole.objects.select_related("user")))
        .order_by("-detected_at", "-id")[:LIST_LIMIT]
    )
    # htmx (the live refresh, the polling fallback) gets the rows only.
    if request.htmx:
        response = render(request, "incidents/_incident_rows.html", {"incidents": rows})
        patch_vary_headers(response, ("HX-Request",))
        return response
    # One read of every incident in the period (not only the listed ones) for the metrics.
    measured = list(incidents.only(*metrics.FIELDS).order_by("detected_at"))
    stats = metrics.summary(measured)
    figures = charts.metrics_figures(metrics.weekly_durations(measured), stats)
    context = {
        "form": form,
        "incidents": rows,
        "period": period,
        "since": since,
        "stats": stats,
        "open_count": Incident.objects.open().count(),
        "agents": Agent.objects.filter(incidents__isnull=False).distinct().order_by("name"),
        "figure_scripts": figure_scripts(figures),
        "has_charts": any(figure["data"] for figure in figures.values()),
        "overdue_items": ActionItem.objects.overdue().count(),
        "can_command": has_role(request.user, COMMANDER),
        "query": request.GET.urlencode(),
    }
    response = render(request, "incidents/incident_list.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


# --- Opening --------------------------------------------------------------------------------------


def _prefill(request) -> tuple[dict, dict]:
    """Initial form values from ?agent=&run=&span=&approval=&project=, and what they point at."""
    initial: dict = {}
    context: dict = {}
    project = None
    if request.GET.get("project"):
        project = Project.objects.filter(name=request.GET["project"]).first()
    trace_id = request.GET.get("run", "")
    if trace_id:
        runs = Run.objects.select_related("agent", "project").filter(trace_id=trace_id)
        if project is not None:
            runs = runs.filter(project=project)
        run = runs.order_by("-started_at").first()
        if run is not None:
            project = run.project
            context["run"] = run
            initial.update(run=run.trace_id, started_at=run.started_at)
            initial["title"] = (
                f"{run.agent.name if run.agent else 'Run'}: {run.name or run.trace_id}"
            )
            if run.agent:
                initial["agents"] = [run.agent.pk]
            span_id = request.GET.get("span", "")
            span = Span.objects.filter(run=run, span_id=span_id).first() if span_id else None
            if span is not None:
                context["span"] = span
                initial["span"] = span.span_id
                problem = span.error_type or span.status
                initial["title"] = f"{initial['title']} — {span.name} ({problem})"
                if span.kind == Span.Kind.TOOL:
                    initial["failure_class"] = "tool"
    approval_id = request.GET.get("approval", "")
    if approval_id.isdigit():
        approval = _approval(int(approval_id))
        if approval is not None:
            project = approval.agent.project
            context["approval"] = approval
            initial["approval"] = approval.pk
            initial["agents"] = [approval.agent_id]
            initial.setdefault(
                "title", f"{approval.agent.name}: {approval.summary or approval.action}"[:200]
            )
            initial["failure_class"] = "policy"
    agent_name = request.GET.get("agent", "")
    if agent_name and "agents" not in initial:
        agents = Agent.objects.select_related("project").filter(name=agent_name)
        if project is not None:
            agents = agents.filter(project=project)
        agent = agents.order_by("project__name").first()
        if agent is not None:
            project = agent.project
            context["agent"] = agent
            initial["agents"] = [agent.pk]
            initial.setdefault("title", f"{agent.name}: ")
    if project is None:
        project = Project.objects.order_by("name").first()
    if project is not None:
        initial["project"] = project.pk
        context["project"] = project
    return initial, context


def _approval(pk):
    model = actions.approval_model()
    if not pk or model is None:
        return None
    return model.objects.select_related("agent", "agent__project").filter(pk=pk).first()


@require_http_methods(["GET", "POST"])
@role_required(COMMANDER)
def incident_new(request):
    if request.method == "POST":
        form = IncidentForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            run = data["run_obj"]
            links = [(run, data["span"] or "", data["relation"] or "trigger")] if run else []
            opened_from = ""
            if run is not None:
                opened_from = f"run {run.trace_id}"
                if data["span"]:
                    opened_from = f"span {data['span']} of run {run.trace_id}"
            approval = _approval(data.get("approval"))
            if approval is not None:
                opened_from = opened_from or f"approval request #{approval.pk}"
                approval_run = Run.objects.filter(
                    project=data["project"], trace_id=approval.trace_id
                ).first()
                if approval_run is not None and not links:
                    links = [(approval_run, "", "trigger")]
            incident = actions.do_open_incident(
                project=data["project"],
                title=data["title"],
                severity=data["severity"],
                user=request.user,
                summary=data["summary"],
                agents=data["agents"],
                failure_class=data["failure_class"],
                failure_chain=data["failure_chain"],
                near_miss=data["near_miss"],
                started_at=data["started_at"],
                links=links,
                opened_from=opened_from,
            )
            if approval is not None:
                actions.record_approval(incident, approval, "created")
            messages.success(request, f"Incident #{incident.pk} opened.")
            return _page(incident)
        # Keep showing where it was opened from while the person fixes the form.
        run = form.cleaned_data.get("run_obj") if hasattr(form, "cleaned_data") else None
        context = {"run": run} if run is not None else {}
    else:
        initial, context = _prefill(request)
        form = IncidentForm(initial=initial)
    projects = Project.objects.all()
    return render(
        request,
        "incidents/incident_new.html",
        {
            "form": form,
            "criteria": [(Severity(s).label, text) for s, text in SEVERITY_CRITERIA.items()],
            "several_projects": projects.count() > 1,
            **context,
        },
    )


# --- The incident page --------------------------------------------------------------------------


def _head_context(request, incident: Incident) -> dict:
    return {
        "incident": incident,
        "now": timezone.now(),
        "can_command": has_role(request.user, COMMANDER),
        "next_statuses": [(s, Status(s).label) for s in incident.allowed_next()],
        "severities": Severity.choices,
        "criteria": SEVERITY_CRITERIA.get(incident.severity, ""),
        "postmortem": getattr(incident, "postmortem", None),
    }


def _timeline_context(request, incident: Incident) -> dict:
    events = list(incident.events.select_related("actor").order_by("at", "id"))
    kind = request.GET.get("kind", "")
    starred_only = request.GET.get("starred") == "1"
    shown = [e for e in events if (not kind or e.kind == kind) and (not starred_only or e.starred)]
    return {
        "incident": incident,
        "events": shown,
        "kind": kind,
        "starred_only": starred_only,
        "kinds": TIMELINE_KINDS.choices,
        "can_command": has_role(request.user, COMMANDER),
    }


def _side_context(request, incident: Incident) -> dict:
    return {
        "incident": incident,
        "can_command": has_role(request.user, COMMANDER),
        "agents": list(incident.agents.select_related("project").order_by("name")),
        "roles_current": [r for r in incident.roles.all() if r.ended_at is None],
        "roles_past": [r for r in incident.roles.all() if r.ended_at is not None],
        "links": list(
            incident.trace_links.select_related("run", "run__agent", "created_by").order_by(
                "relation", "created_at"
            )
        ),
        "queries": list(incident.trace_queries.select_related("agent")),
        "action_items": list(incident.action_items.select_related("owner")),
        "postmortem": getattr(incident, "postmortem", None),
        "today": timezone.localdate(),
        "role_form": RoleForm(),
        "link_form": LinkForm(initial={"relation": TraceLink.Relation.AFFECTED}),
        "query_form": QueryForm(
            project=incident.project,
            initial={"since": incident.started_at, "relation": TraceLink.Relation.AFFECTED},
        ),
        "item_form": ActionItemForm(
            initial={"due_date": ActionItem.default_due_date(incident.severity)}
        ),
        "details_form": DetailsForm(
            project=incident.project,
            initial={
                "title": incident.title,
                "summary": incident.summary,
                "failure_class": incident.failure_class,
                "failure_chain": "\n".join(incident.failure_chain),
                "near_miss": incident.near_miss,
                "agents": [a.pk for a in incident.agents.all()],
            },
        ),
        "approvals_available": actions.approval_model() is not None,
        "item_statuses": ActionItem.Status.choices,
    }


def _blast_context(request, incident: Incident) -> dict:
    return {"incident": incident, "radius": blast.current(incident)}


PARTS = {
    "head": ("incidents/_incident_head.html", _head_context),
    "timeline": ("incidents/_incident_timeline.html", _timeline_context),
    "side": ("incidents/_incident_side.html", _side_context),
    "blast": ("incidents/_blast_radius.html", _blast_context),
}


@require_GET
@role_required(VIEWER)
def incident_detail(request, pk: int):
    incident = _get_incident(pk)
    part = request.GET.get("part")
    # htmx re-fetches of one part after a live refresh: render only that fragment.
    if request.htmx and part in PARTS:
        template, build = PARTS[part]
        response = render(request, template, build(request, incident))
    else:
        context = {}
        for _, build in PARTS.values():
            context.update(build(request, incident))
        context["note_form"] = NoteForm()
        response = render(request, "incidents/incident_detail.html", context)
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_POST
@role_required(COMMANDER)
def incident_status(request, pk: int):
    incident = _get_incident(pk)
    form = TransitionForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident)
    data = form.cleaned_data
    try:
        actions.do_transition(
            incident, data["status"], user=request.user, note=data["note"], at=data["at"]
        )
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, f"Incident #{incident.pk} is now {data['status']}.")
    return _page(incident)


@require_POST
@role_required(COMMANDER)
def incident_severity(request, pk: int):
    incident = _get_incident(pk)
    form = SeverityForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident)
    try:
        actions.do_set_severity(
            incident,
            form.cleaned_data["severity"],
            user=request.user,
            note=form.cleaned_data["note"],
        )
    except ValidationError as error:
        _report(request, error)
    return _page(incident)


@require_POST
@role_required(COMMANDER)
def incident_edit(request, pk: int):
    incident = _get_incident(pk)
    form = DetailsForm(request.POST, project=incident.project)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "details")
    actions.do_update_details(incident, user=request.user, **form.cleaned_data)
    return _page(incident, "details")


@require_POST
@role_required(COMMANDER)
def incident_note(request, pk: int):
    incident = _get_incident(pk)
    form = NoteForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "timeline")
    actions.do_add_note(incident, user=request.user, text=form.cleaned_data["text"])
    return _page(incident, "timeline")


@require_POST
@role_required(COMMANDER)
def incident_star(request, pk: int, event_pk: int):
    incident = _get_incident(pk)
    event = get_object_or_404(TimelineEvent, pk=event_pk, incident=incident)
    event.incident = incident
    actions.do_star(event, user=request.user, starred=request.POST.get("starred") == "1")
    if request.htmx:
        return render(
            request,
            "incidents/_timeline_event.html",
            {"event": event, "incident": incident, "can_command": True},
        )
    return _page(incident, f"event-{event.pk}")


@require_POST
@role_required(COMMANDER)
def incident_role(request, pk: int):
    incident = _get_incident(pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "roles")
    try:
        actions.do_assign_role(
            incident,
            role=form.cleaned_data["role"],
            person=form.cleaned_data["person"],
            by=request.user,
        )
    except ValidationError as error:
        _report(request, error)
    return _page(incident, "roles")


@require_POST
@role_required(COMMANDER)
def incident_role_end(request, pk: int, role_pk: int):
    incident = _get_incident(pk)
    assignment = get_object_or_404(
        IncidentRole.objects.select_related("user"), pk=role_pk, incident=incident
    )
    assignment.incident = incident
    try:
        actions.do_end_role(assignment, by=request.user)
    except ValidationError as error:
        _report(request, error)
    return _page(incident, "roles")


@require_POST
@role_required(COMMANDER)
def incident_link(request, pk: int):
    incident = _get_incident(pk)
    form = LinkForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "traces")
    data = form.cleaned_data
    run = (
        Run.objects.select_related("agent")
        .filter(project=incident.project, trace_id=data["trace_id"].lower())
        .first()
    )
    if run is None:
        messages.error(request, f"No run {data['trace_id']} in project {incident.project}.")
        return _page(incident, "traces")
    actions.do_link_run(
        incident,
        run,
        relation=data["relation"],
        user=request.user,
        span_id=data["span_id"],
        note=data["note"],
    )
    return _page(incident, "traces")


@require_POST
@role_required(COMMANDER)
def incident_link_run(request):
    """Link a run to an open incident from the run page; back to the run page after."""
    form = RunLinkForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return HttpResponseRedirect(reverse("incident-list"))
    data = form.cleaned_data
    incident = _get_incident(data["incident"])
    run = get_object_or_404(
        Run.objects.select_related("agent", "project"),
        project_id=data["run_project"],
        trace_id=data["trace_id"],
    )
    try:
        actions.do_link_run(incident, run, relation=data["relation"], user=request.user)
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, f"Linked to incident #{incident.pk} as {data['relation']}.")
    back = reverse("run-detail", args=[run.trace_id]) + f"?project={run.project.name}"
    return HttpResponseRedirect(back)


@require_POST
@role_required(COMMANDER)
def incident_unlink(request, pk: int, link_pk: int):
    incident = _get_incident(pk)
    link = get_object_or_404(TraceLink.objects.select_related("run"), pk=link_pk, incident=incident)
    link.incident = incident
    actions.do_unlink(link, user=request.user)
    return _page(incident, "traces")


@require_POST
@role_required(COMMANDER)
def incident_query(request, pk: int):
    incident = _get_incident(pk)
    form = QueryForm(request.POST, project=incident.project)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "traces")
    actions.do_add_query(incident, user=request.user, **form.cleaned_data)
    return _page(incident, "traces")


@require_POST
@role_required(COMMANDER)
def incident_query_remove(request, pk: int, query_pk: int):
    incident = _get_incident(pk)
    query = get_object_or_404(
        TraceQuery.objects.select_related("agent"), pk=query_pk, incident=incident
    )
    query.incident = incident
    actions.do_remove_query(query, user=request.user)
    return _page(incident, "traces")


@require_POST
@role_required(COMMANDER)
def incident_pause(request, pk: int):
    incident = _get_incident(pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "agents")
    try:
        paused, skipped = actions.do_pause_agents(
            incident, user=request.user, reason=form.cleaned_data["reason"]
        )
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, "Paused " + ", ".join(a.name for a in paused) + ".")
        for reason in skipped:
            messages.info(request, reason)
    return _page(incident, "agents")


@require_POST
@role_required(COMMANDER)
def incident_freeze(request, pk: int):
    incident = _get_incident(pk)
    if actions.approval_model() is None:
        raise Http404("Approvals are not available.")
    form = ReasonForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "agents")
    try:
        frozen = actions.do_freeze_approvals(
            incident, user=request.user, reason=form.cleaned_data["reason"]
        )
    except ValidationError as error:
        _report(request, error)
    else:
        count = len(frozen)
        messages.success(request, f"Rejected {count} pending approval{'s' * (count != 1)}.")
    return _page(incident, "agents")


# --- Postmortem ----------------------------------------------------------------------------------


@require_GET
@role_required(VIEWER)
def postmortem_page(request, pk: int):
    incident = _get_incident(pk)
    record = getattr(incident, "postmortem", None)
    body = record.body if record is not None else postmortem.template_for(incident)
    can_command = has_role(request.user, COMMANDER)
    editing = can_command and (record is None or record.status != Postmortem.Status.PUBLISHED)
    return render(
        request,
        "incidents/postmortem.html",
        {
            "incident": incident,
            "postmortem": record,
            "form": PostmortemForm(initial={"body": body}),
            "rendered": postmortem.render_markdown(postmortem.document(incident)),
            "can_command": can_command,
            "editing": editing,
            "next_statuses": [
                (s, Postmortem.Status(s).label)
                for s in Postmortem.TRANSITIONS[record.status if record else "draft"]
            ],
            "required": incident.postmortem_required,
        },
    )


@require_POST
@role_required(COMMANDER)
def postmortem_save(request, pk: int):
    incident = _get_incident(pk)
    form = PostmortemForm(request.POST)
    url = reverse("incident-postmortem", args=[incident.pk])
    if not form.is_valid():
        _form_errors(request, form)
        return HttpResponseRedirect(url)
    try:
        actions.do_save_postmortem(incident, user=request.user, body=form.cleaned_data["body"])
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, "Postmortem saved.")
    return HttpResponseRedirect(url)


@require_POST
@role_required(COMMANDER)
def postmortem_preview(request, pk: int):
    """The editor's preview: the body as it will render, sanitised (an htmx fragment)."""
    _get_incident(pk)
    form = PostmortemForm(request.POST)
    body = form.cleaned_data["body"] if form.is_valid() else ""
    return render(request, "incidents/_markdown.html", {"html": postmortem.render_markdown(body)})


@require_POST
@role_required(COMMANDER)
def postmortem_status(request, pk: int):
    incident = _get_incident(pk)
    url = reverse("incident-postmortem", args=[incident.pk])
    record = getattr(incident, "postmortem", None)
    form = PostmortemStatusForm(request.POST)
    if record is None:
        messages.error(request, "Save the postmortem first.")
        return HttpResponseRedirect(url)
    if not form.is_valid():
        _form_errors(request, form)
        return HttpResponseRedirect(url)
    try:
        record = actions.do_set_postmortem_status(
            record, form.cleaned_data["status"], user=request.user
        )
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, f"Postmortem {record.get_status_display()}.")
    return HttpResponseRedirect(url)


@require_GET
@role_required(VIEWER)
def postmortem_export(request, pk: int):
    incident = _get_incident(pk)
    response = HttpResponse(
        postmortem.document(incident), content_type="text/markdown; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="incident-{incident.pk}-postmortem.md"'
    return response


# --- Action items -----------------------------------------------------------------------------


@require_POST
@role_required(COMMANDER)
def action_item_add(request, pk: int):
    incident = _get_incident(pk)
    form = ActionItemForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return _page(incident, "action-items")
    actions.do_add_action_item(incident, user=request.user, **form.cleaned_data)
    return _page(incident, "action-items")


@require_POST
@role_required(COMMANDER)
def action_item_status(request, item_pk: int):
    item = get_object_or_404(ActionItem.objects.select_related("incident"), pk=item_pk)
    form = ActionItemStatusForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
    else:
        actions.do_set_action_item_status(item, form.cleaned_data["status"], user=request.user)
    back = request.POST.get("next", "")
    if back == "list":
        return HttpResponseRedirect(reverse("incident-action-items"))
    return _page(item.incident, "action-items")


@require_GET
@role_required(VIEWER)
def action_item_list(request):
    show = request.GET.get("show", "unfinished")
    items = ActionItem.objects.select_related("incident", "owner")
    if show == "unfinished":
        items = items.unfinished()
    elif show == "overdue":
        items = items.overdue()
    elif show == "mine":
        items = items.unfinished().filter(owner=request.user)
    counts = ActionItem.objects.aggregate(
        unfinished=Count("id", filter=Q(status__in=["open", "in_progress"])),
        overdue=Count(
            "id",
            filter=Q(status__in=["open", "in_progress"], due_date__lt=timezone.localdate()),
        ),
    )
    return render(
        request,
        "incidents/action_items.html",
        {
            "items": list(items.order_by("due_date", "id")[:500]),
            "show": show,
            "counts": counts,
            "today": timezone.localdate(),
            "can_command": has_role(request.user, COMMANDER),
            "statuses": ActionItem.Status.choices,
        },
    )
