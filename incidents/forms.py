"""Forms of the incident pages: each validates one POST and says which field is wrong."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q

from cockpit import roles
from incidents.models import (
    ActionItem,
    FailureClass,
    IncidentRole,
    Postmortem,
    Severity,
    Status,
    TraceLink,
)
from traces.models import Agent, Project, Run


def cockpit_people():
    """People who hold a cockpit role: the ones who can take an incident role or an item."""
    users = get_user_model().objects.filter(is_active=True)
    return (
        users.filter(Q(is_superuser=True) | Q(groups__name__in=roles.ROLES))
        .distinct()
        .order_by("username")
    )


class AgentChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, agent):
        return agent.name


class DateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


def chain_lines(text: str) -> list[str]:
    return [line.strip()[:300] for line in (text or "").splitlines() if line.strip()][:30]


class IncidentForm(forms.Form):
    """Open an incident by hand (also edits its details)."""

    project = forms.ModelChoiceField(queryset=Project.objects.all(), empty_label=None)
    title = forms.CharField(max_length=200)
    severity = forms.TypedChoiceField(
        choices=Severity.choices, coerce=int, initial=Severity.SEV3, widget=forms.RadioSelect
    )
    summary = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    agents = AgentChoices(
        queryset=Agent.objects.select_related("project"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    failure_class = forms.ChoiceField(
        choices=[("", "not known yet"), *FailureClass.choices], required=False
    )
    failure_chain = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One step per line, in order: what went wrong first, then what it led to.",
    )
    near_miss = forms.BooleanField(required=False, label="Near miss (caught before harm)")
    started_at = forms.DateTimeField(
        required=False,
        widget=DateTimeInput(),
        label="Impact started",
        help_text="Empty: now. Used for time to detect.",
    )
    # Where it was opened from: carried along, linked on creation.
    run = forms.CharField(required=False, max_length=32, widget=forms.HiddenInput)
    span = forms.CharField(required=False, max_length=16, widget=forms.HiddenInput)
    approval = forms.IntegerField(required=False, widget=forms.HiddenInput)
    relation = forms.ChoiceField(
        choices=TraceLink.Relation.choices,
        initial=TraceLink.Relation.TRIGGER,
        required=False,
        label="Link the run as",
    )

    def clean_failure_chain(self):
        return chain_lines(self.cleaned_data["failure_chain"])

    def clean(self):
        data = super().clean()
        project = data.get("project")
        if project is None:
            return data
        foreign = [a.name for a in data.get("agents") or () if a.project_id != project.pk]
        if foreign:
            self.add_error("agents", f"Not agents of project {project}: {', '.join(foreign)}.")
        data["run_obj"] = None
        if data.get("run"):
            run = (
                Run.objects.select_related("agent")
                .filter(project=project, trace_id=data["run"])
                .first()
            )
            if run is None:
                self.add_error("run", f"No run {data['run']} in project {project}.")
            data["run_obj"] = run
        return data


class DetailsForm(forms.Form):
    title = forms.CharField(max_length=200)
    summary = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    failure_class = forms.ChoiceField(
        choices=[("", "not known yet"), *FailureClass.choices], required=False
    )
    failure_chain = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One step per line, in order.",
    )
    near_miss = forms.BooleanField(required=False, label="Near miss (caught before harm)")
    agents = AgentChoices(
        queryset=Agent.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agents"].queryset = Agent.objects.filter(project=project)

    def clean_failure_chain(self):
        return chain_lines(self.cleaned_data["failure_chain"])


class TransitionForm(forms.Form):
    status = forms.ChoiceField(choices=Status.choices)
    note = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    at = forms.DateTimeField(
        required=False, widget=DateTimeInput(), label="When", help_text="Empty: now."
    )


class SeverityForm(forms.Form):
    severity = forms.TypedChoiceField(choices=Severity.choices, coerce=int)
    note = forms.CharField(max_length=2000)


class NoteForm(forms.Form):
    text = forms.CharField(max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=IncidentRole.Role.choices)
    person = forms.ModelChoiceField(queryset=get_user_model().objects.none())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["person"].queryset = cockpit_people()


class LinkForm(forms.Form):
    trace_id = forms.RegexField(regex=r"^[0-9a-fA-F]{1,32}$", max_length=32, label="Trace id")
    span_id = forms.RegexField(regex=r"^[0-9a-fA-F]{1,16}$", required=False, max_length=16)
    relation = forms.ChoiceField(choices=TraceLink.Relation.choices)
    note = forms.CharField(required=False, max_length=500)


class RunLinkForm(forms.Form):
    """Link a run to an incident from the run page."""

    incident = forms.IntegerField()
    trace_id = forms.RegexField(regex=r"^[0-9a-fA-F]{1,32}$", max_length=32)
    run_project = forms.IntegerField()
    relation = forms.ChoiceField(choices=TraceLink.Relation.choices)


class QueryForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Agent.objects.none(), empty_label=None)
    since = forms.DateTimeField(widget=DateTimeInput())
    until = forms.DateTimeField(required=False, widget=DateTimeInput(), help_text="Empty: open.")
    status = forms.ChoiceField(
        choices=[("", "any status"), (Run.Status.OK, "ok"), (Run.Status.ERROR, "error")],
        required=False,
    )
    outcome = forms.ChoiceField(
        choices=[("", "any outcome"), *[(v, v) for v in Run.Outcome.values if v]], required=False
    )
    error_type = forms.CharField(required=False, max_length=200)
    relation = forms.ChoiceField(choices=TraceLink.Relation.choices)

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.filter(project=project)

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["until"] <= data["since"]:
            self.add_error("until", "Must be after the start.")
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=900)


class PostmortemForm(forms.Form):
    body = forms.CharField(required=False, max_length=200_000, widget=forms.Textarea)


class PostmortemStatusForm(forms.Form):
    status = forms.ChoiceField(choices=Postmortem.Status.choices)


class ActionItemForm(forms.Form):
    title = forms.CharField(max_length=300)
    owner = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False)
    due_date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Empty: the default for the severity.",
    )
    kind = forms.ChoiceField(choices=ActionItem.Kind.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["owner"].queryset = cockpit_people()


class ActionItemStatusForm(forms.Form):
    status = forms.ChoiceField(choices=ActionItem.Status.choices)


class ListFilterForm(forms.Form):
    PERIODS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}

    status = forms.ChoiceField(
        choices=[("", "any status"), ("open", "open (not resolved)"), *Status.choices],
        required=False,
    )
    severity = forms.TypedChoiceField(
        choices=[("", "any severity"), *Severity.choices],
        coerce=int,
        empty_value=None,
        required=False,
    )
    failure_class = forms.ChoiceField(
        choices=[("", "any class"), *FailureClass.choices], required=False
    )
    agent = forms.CharField(required=False, max_length=200)
    period = forms.ChoiceField(
        choices=[("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"), ("365d", "year")],
        required=False,
    )
