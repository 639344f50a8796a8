"""Forms of the trace pages: run filters, projects, ingest keys and model prices."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django import forms
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from traces.models import Agent, IngestKey, ModelPrice, Project, Run, Span, UnpricedModel
from traces.pricing import cost_from_row

SINCE_CHOICES = [
    ("", "Any time"),
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
]
SINCE_DELTAS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
STATUS_CHOICES = [("", "Any status"), *Run.Status.choices]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(run: Run) -> str:
    """A keyset cursor for the runs list: the run's start in epoch microseconds and its id."""
    micros = (run.started_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{run.pk}"


def decode_cursor(cursor: str) -> tuple[datetime, int] | None:
    micros, _, pk = cursor.partition("-")
    try:
        return _EPOCH + timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, OverflowError):
        return None


class RunFilterForm(forms.Form):
    """The GET filters of the runs list. A malformed filter is dropped rather than refused."""

    agent = forms.CharField(required=False, max_length=200)
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    since = forms.ChoiceField(choices=SINCE_CHOICES, required=False)
    before = forms.CharField(required=False)

    def filter(self, runs):
        self.is_valid()  # fields that fail validation are simply absent from cleaned_data
        data = self.cleaned_data
        if data.get("agent"):
            runs = runs.filter(agent__name=data["agent"])
        if data.get("status"):
            runs = runs.filter(status=data["status"])
        if data.get("since"):
            runs = runs.since(timezone.now() - SINCE_DELTAS[data["since"]])
        position = decode_cursor(data.get("before") or "")
        if position is not None:
            started_at, pk = position
            runs = runs.filter(Q(started_at__lt=started_at) | Q(started_at=started_at, pk__lt=pk))
        return runs

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in ("agent", "status", "since"))

    @property
    def is_paged(self) -> bool:
        return bool(self.cleaned_data.get("before"))


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
