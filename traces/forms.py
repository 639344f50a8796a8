"""Forms of the trace pages: run filters, projects, ingest keys and model prices."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django import forms
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from traces.models import Agent, IngestKey, ModelPrice, Project, Run, Span, UnpricedModel
from traces.pricing import cost_from_row
from traces.search import runs_mentioning

PERIOD_CHOICES = [
    ("", "Any time"),
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
]
PERIOD_DELTAS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
STATUS_CHOICES = [("", "Any status"), *Run.Status.choices]
OUTCOME_CHOICES = [("", "Any outcome"), *Run.Outcome.choices[1:], ("none", "Not reported")]


@dataclass(frozen=True)
class Sort:
    label: str
    field: str
    descending: bool

    @property
    def order_by(self) -> list[str]:
        sign = "-" if self.descending else ""
        return [f"{sign}{self.field}", f"{sign}id"]


# Every sort has an index on (sort field, id), so each page of it is one index range scan.
SORTS = {
    "-started": Sort("Newest first", "started_at", descending=True),
    "started": Sort("Oldest first", "started_at", descending=False),
    "-duration": Sort("Longest first", "duration_ms", descending=True),
    "duration": Sort("Shortest first", "duration_ms", descending=False),
    "-cost": Sort("Most expensive first", "cost_usd", descending=True),
    "cost": Sort("Cheapest first", "cost_usd", descending=False),
}
DEFAULT_SORT = "-started"
SORT_CHOICES = [(key, sort.label) for key, sort in SORTS.items()]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(run: Run, sort: str = DEFAULT_SORT) -> str:
    """A keyset cursor: the run's value of the sort field, then its id ("<value>_<id>").

    Times are epoch microseconds, durations the float's repr (exact round trip), costs the
    decimal as stored. The id breaks ties, so runs with equal values are neither skipped nor
    repeated across pages.
    """
    value = getattr(run, SORTS[sort].field)
    if isinstance(value, datetime):
        value = (value - _EPOCH) // timedelta(microseconds=1)
    elif isinstance(value, float):
        value = repr(value)
    return f"{value}_{run.pk}"


def decode_cursor(cursor: str, sort: str = DEFAULT_SORT) -> tuple[object, int] | None:
    raw, _, pk = cursor.rpartition("_")
    field = SORTS[sort].field
    try:
        if field == "started_at":
            value: object = _EPOCH + timedelta(microseconds=int(raw))
        elif field == "duration_ms":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
                return None
        else:
            value = Decimal(raw)
            if not value.is_finite():
                return None
        return value, int(pk)
    except (ValueError, OverflowError, ArithmeticError):
        return None


def beyond(field: str, value, pk: int, *, descending: bool) -> Q:
    """Rows after (value, pk) in the order (field, id), descending or ascending.

    Written as `field <= value AND (field < value OR id < pk)` rather than a bare OR: the
    first term bounds the index range scan, so a deep page starts where the cursor points
    instead of filtering its way there.
    """
    if descending:
        return Q(**{f"{field}__lte": value}) & (Q(**{f"{field}__lt": value}) | Q(pk__lt=pk))
    return Q(**{f"{field}__gte": value}) & (Q(**{f"{field}__gt": value}) | Q(pk__gt=pk))


DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
DATETIME_WIDGET = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class RunFilterForm(forms.Form):
    """The GET filters of the runs list, all optional; the URL carries them, so views share.

    A bad value is reported on its field and that filter alone is left out: the list still
    shows, filtered by everything that was valid.
    """

    q = forms.CharField(
        label="Search content",
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Words in prompts, tool calls, answers…"}
        ),
    )
    agent = forms.CharField(required=False, max_length=200)
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    outcome = forms.ChoiceField(choices=OUTCOME_CHOICES, required=False)
    version = forms.CharField(required=False, max_length=100)
    model = forms.CharField(required=False, max_length=200)
    user = forms.CharField(required=False, max_length=200)
    conversation = forms.CharField(required=False, max_length=200)
    task = forms.CharField(label="Task type", required=False, max_length=100)
    period = forms.ChoiceField(label="Started", choices=PERIOD_CHOICES, required=False)
    since = forms.DateTimeField(
        label="From", required=False, input_formats=DATETIME_FORMATS, widget=DATETIME_WIDGET
    )
    until = forms.DateTimeField(
        label="Until", required=False, input_formats=DATETIME_FORMATS, widget=DATETIME_WIDGET
    )
    # Text inputs rather than type=number, so a bad value reaches the form and is explained.
    min_cost = forms.DecimalField(
        label="Min cost ($)",
        required=False,
        min_value=0,
        max_digits=16,
        decimal_places=8,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "0.05"}),
    )
    min_duration = forms.FloatField(
        label="Min duration (s)",
        required=False,
        min_value=0,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "30"}),
    )
    has_error = forms.BooleanField(label="Has errors", required=False)
    has_pii = forms.BooleanField(label="Has PII", required=False)
    sort = forms.ChoiceField(choices=SORT_CHOICES, required=False)
    cursor = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
    after = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    # The filters proper: what "Clear" drops and what makes the list "filtered".
    FILTERS = (
        "q", "agent", "status", "outcome", "version", "model", "user", "conversation", "task",
        "period", "since", "until", "min_cost", "min_duration", "has_error", "has_pii",
    )  # fmt: skip

    def __init__(self, data=None, *, now: datetime | None = None):
        super().__init__(data)
        self.now = now or timezone.now()

    def clean_min_duration(self):
        value = self.cleaned_data["min_duration"]
        if value is not None and value != value:  # NaN passes min_value
            raise forms.ValidationError("Enter a number of seconds.")
        return value

    def clean(self):
        data = super().clean()
        sort = data.get("sort") or DEFAULT_SORT
        data["sort"] = sort
        for name in ("cursor", "after"):
            if data.get(name):
                data[f"{name}_position"] = decode_cursor(data[name], sort)
                if data[f"{name}_position"] is None:
                    self.add_error(name, "This page link is out of date; showing the first page.")
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "Until must be after From.")
        return data

    @property
    def chosen_sort(self) -> Sort:
        return SORTS[self.cleaned_data.get("sort") or DEFAULT_SORT]

    def filter(self, runs):
        """Runs matching the valid filters, in the chosen order, from the cursor on."""
        self.is_valid()  # fields that fail validation are simply absent from cleaned_data
        data = self.cleaned_data
        for name, lookup in (
            ("agent", "agent__name"),
            ("status", "status"),
            ("version", "version"),
            ("user", "user_id"),
            ("conversation", "conversation_id"),
            ("task", "task_type"),
        ):
            if data.get(name):
                runs = runs.filter(**{lookup: data[name]})
        if data.get("outcome"):
            runs = runs.filter(outcome="" if data["outcome"] == "none" else data["outcome"])
        if data.get("period"):
            runs = runs.since(self.now - PERIOD_DELTAS[data["period"]])
        if data.get("since"):
            runs = runs.filter(started_at__gte=data["since"])
        if data.get("until"):
            runs = runs.filter(started_at__lt=data["until"])
        if data.get("min_cost") is not None:
            runs = runs.filter(cost_usd__gte=data["min_cost"])
        if data.get("min_duration") is not None:
            runs = runs.filter(duration_ms__gte=data["min_duration"] * 1000)
        if data.get("has_error"):
            runs = runs.filter(error_count__gt=0)
        if data.get("has_pii"):
            runs = runs.filter(pii_count__gt=0)
        if data.get("model"):
            # Runs that called the model: an LLM span of the run with it (span_unique_in_run).
            model_spans = Span.objects.filter(run=OuterRef("pk"), kind=Span.Kind.LLM)
            runs = runs.filter(Exists(model_spans.filter(model=data["model"])))
        if data.get("q"):
            runs = runs.filter(runs_mentioning(data["q"]))
        sort = self.chosen_sort
        if data.get("cursor_position"):
            value, pk = data["cursor_position"]
            runs = runs.filter(beyond(sort.field, value, pk, descending=sort.descending))
        return runs.order_by(*sort.order_by)

    def newer(self, runs):
        """Runs newer than the live cursor (`after`), newest first: what the live list lacks."""
        value, pk = self.cleaned_data["after_position"]
        return runs.filter(beyond("started_at", value, pk, descending=False)).order_by(
            "-started_at", "-id"
        )

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) not in (None, "", False) for name in self.FILTERS)

    @property
    def is_paged(self) -> bool:
        return bool(self.cleaned_data.get("cursor_position"))

    @property
    def is_live(self) -> bool:
        """New runs belong at the top: the first page, newest first, with no end time."""
        return (
            not self.is_paged
            and self.chosen_sort is SORTS[DEFAULT_SORT]
            and not self.cleaned_data.get("until")
        )


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name"]
        help_texts = {"name": "Lowercase letters, digits and dashes, e.g. support-bots."}


class KeyForm(forms.ModelForm):
    class Meta:
        model = IngestKey
        fields = ["label"]
        help_texts = {"label": "Where the key will live, e.g. “prod support workers”."}


class ModelPriceForm(forms.ModelForm):
    """Add a project's price for a model, then reprice the spans that were waiting for it."""

    project = forms.ModelChoiceField(
        queryset=Project.objects.all(), to_field_name="name", empty_label="Choose a project"
    )

    class Meta:
        model = ModelPrice
        fields = [
            "project",
            "provider",
            "model",
            "input_per_mtok",
            "output_per_mtok",
            "cache_read_per_mtok",
            "cache_write_per_mtok",
        ]

    def save(self, commit=True) -> ModelPrice:
        with transaction.atomic():
            price = super().save(commit=True)
            self.repriced_spans = reprice_unpriced_spans(price)
        return price


# --- Repricing stored spans under a project's new price ------------------------------------

_COST_PLACES = Decimal("0.00000001")  # Span.cost_usd keeps eight decimal places.


def reprice_unpriced_spans(price: ModelPrice) -> int:
    """Price the stored spans that waited for `price`, refresh their runs, drop the unpriced row.

    A price without a provider matches the model under any provider. The arithmetic is
    traces.pricing's, the same ingest uses. Returns the number of spans repriced. Call inside a
    transaction.
    """
    model_match = Q(project=price.project, model__iexact=price.model)
    if price.provider:
        model_match &= Q(provider__iexact=price.provider)
    spans = list(
        Span.objects.filter(model_match, cost_known=False).only(
            "id",
            "run_id",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
        )
    )
    repriced = []
    for span in spans:
        try:
            cost = cost_from_row(
                price,
                input_tokens=span.input_tokens,
                output_tokens=span.output_tokens,
                cache_read_tokens=span.cache_read_tokens,
                cache_write_tokens=span.cache_write_tokens,
            )
        except ValueError:
            continue  # Usage that makes no sense (more cached than input) stays unpriced.
        span.cost_usd = cost.quantize(_COST_PLACES)
        span.cost_known = True
        repriced.append(span)
    Span.objects.bulk_update(repriced, ["cost_usd", "cost_known"], batch_size=500)

    run_ids = {span.run_id for span in repriced}
    if run_ids:
        # The same rule as ingest's run summary: a run costs what its LLM spans cost.
        run_spans = Span.objects.filter(run=OuterRef("pk"), kind=Span.Kind.LLM)
        Run.objects.filter(pk__in=run_ids).update(
            cost_usd=Coalesce(
                Subquery(run_spans.values("run").annotate(total=Sum("cost_usd")).values("total")),
                Value(Decimal(0)),
            ),
            cost_known=~Exists(run_spans.filter(cost_known=False)),
        )
    UnpricedModel.objects.filter(model_match).delete()
    return len(repriced)


def agent_names() -> list[str]:
    return list(Agent.objects.order_by("name").values_list("name", flat=True).distinct())
