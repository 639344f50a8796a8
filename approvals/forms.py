"""Forms of the reviewer's pages: queue filters, a decision, queue-health window, policies."""

from __future__ import annotations

import json

import orjson
from django import forms
from django.http import QueryDict

from approvals.models import LEVELS, Decision, Policy, Risk, arguments_sha256

LEVEL_CHOICES = [("", "Any level"), *((str(n), f"L{n}") for n in LEVELS)]
RISK_CHOICES = [("", "Any risk"), *Risk.choices]


class QueueFilterForm(forms.Form):
    """The queue's filters, all in the address: ?mine=1&level=3&risk=high&agent=refund-bot.

    A bad value drops that filter only (invalid fields stay out of cleaned_data)."""

    mine = forms.BooleanField(required=False, label="At my levels")
    level = forms.TypedChoiceField(
        choices=LEVEL_CHOICES, coerce=int, empty_value=None, required=False
    )
    risk = forms.ChoiceField(choices=RISK_CHOICES, required=False)
    agent = forms.CharField(required=False, max_length=200)

    def filter(self, requests):
        """Apply the filters the database can answer; `mine` needs the reviewer's levels."""
        data = self.cleaned_data
        if data.get("level"):
            requests = requests.filter(level=data["level"])
        if data.get("risk"):
            requests = requests.filter(risk_tier=data["risk"])
        if data.get("agent"):
            requests = requests.filter(agent__name=data["agent"])
        return requests

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in ("mine", "level", "risk", "agent"))

    def query(self) -> str:
        """The filters as a query string (for the live element's re-fetch)."""
        query = QueryDict(mutable=True)
        for name in ("mine", "level", "risk", "agent"):
            value = self.cleaned_data.get(name)
            if value:
                query[name] = "1" if value is True else str(value)
        return query.urlencode()


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_arguments(text: str) -> dict:
    """A reviewer's edited arguments: a JSON object, or ValueError saying what is wrong."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Edited arguments are not valid JSON: {error.msg} (line {error.lineno}, "
            f"column {error.colno})."
        ) from None
    except ValueError as error:
        raise ValueError(f"Edited arguments are not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
            type(value), "a number"
        )
        raise ValueError(f"Edited arguments must be a JSON object ({{…}}), not {kind}.")
    try:
        # The engine hashes with orjson, which refuses integers past 64 bits.
        arguments_sha256(value)
    except (TypeError, orjson.JSONEncodeError):
        raise ValueError("Edited arguments hold a number too large to store exactly.") from None
    return value


class DecisionForm(forms.Form):
    """A reviewer's decision, bound to the hash of the arguments they saw."""

    decision = forms.ChoiceField(choices=Decision.choices)
    comment = forms.CharField(required=False, max_length=5000, widget=forms.Textarea)
    arguments = forms.CharField(required=False, strip=False, widget=forms.Textarea)
    seen_sha256 = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        decision = cleaned.get("decision")
        if decision == Decision.REJECT and not cleaned.get("comment", "").strip():
            self.add_error("comment", "Say why: a rejection needs a comment.")
        cleaned["edited_arguments"] = None
        if decision == Decision.APPROVE_EDITED:
            try:
                cleaned["edited_arguments"] = parse_arguments(cleaned.get("arguments", ""))
            except ValueError as error:
                self.add_error("arguments", str(error))
        return cleaned

    @property
    def first_error(self) -> str:
        for problems in self.errors.values():
            return problems[0]
        return ""


HEALTH_WINDOWS = {"7d": 7, "30d": 30, "90d": 90}


class HealthWindowForm(forms.Form):
    window = forms.ChoiceField(
        choices=[(key, f"{days} days") for key, days in HEALTH_WINDOWS.items()], required=False
    )

    @property
    def key(self) -> str:
        window = self.cleaned_data.get("window") if self.is_valid() else None
        return window or "30d"

    @property
    def days(self) -> int:
        return HEALTH_WINDOWS[self.key]


class ExportForm(forms.Form):
    """The decisions export's window: decided in the last `days` days (default 30)."""

    days = forms.IntegerField(min_value=1, max_value=3660, required=False)


class PolicyForm(forms.ModelForm):
    """Create or edit a policy; the model's clean() checks conditions and decisions."""

    conditions = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "class": "mono", "spellcheck": "false"}),
        help_text='A list, all must hold: [{"field": "amount", "op": ">", "value": 1000}]. '
        'A field is "amount", "currency" or an argument name (dots reach into objects).',
    )
    allowed_decisions = forms.MultipleChoiceField(
        choices=[(value, label.lower()) for value, label in Decision.choices],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Reject is always allowed. None ticked: every decision.",
    )

    class Meta:
        model = Policy
        fields = [
            "name",
            "project",
            "priority",
            "enabled",
            "agent_name",
            "action",
            "conditions",
            "risk_tier",
            "chain",
            "approvals_required",
            "allowed_decisions",
            "owner_may_approve",
            "on_expiry",
        ]
        labels = {"agent_name": "Agent", "owner_may_approve": "The agent's owner may approve"}

    def clean_conditions(self):
        # An empty box means no conditions, not JSON null.
        return self.cleaned_data.get("conditions") or []

    def clean_allowed_decisions(self):
        # Kept in Decision order, so the same choice always stores the same list.
        chosen = set(self.cleaned_data.get("allowed_decisions") or [])
        return [value for value in Decision.values if value in chosen]
