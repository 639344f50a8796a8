from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent, make_run
from traces.models import ModelPrice, Run, Span, UnpricedModel

pytestmark = pytest.mark.django_db


def unpriced_llm_run(project, model="acme-llm-1", provider="acme-ai", **tokens):
    """A run whose one LLM span used a model without a price."""
    run = make_run(project, spans=2, cost_usd=Decimal(0), cost_known=False)
    run.spans.filter(parent_span_id__gt="").update(
        kind="llm",
        provider=provider,
        model=model,
        cost_usd=None,
        cost_known=False,
        input_tokens=tokens.get("input_tokens", 1_000_000),
        output_tokens=tokens.get("output_tokens", 100_000),
        cache_read_tokens=tokens.get("cache_read_tokens", 0),
        cache_write_tokens=tokens.get("cache_write_tokens", 0),
    )
    return run


def seen_unpriced(project, model="acme-llm-1", provider="acme-ai", spans=1):
    return UnpricedModel.objects.create(
        project=project, provider=provider, model=model, span_count=spans
    )


PRICE = {
    "project": "acme",
    "provider": "acme-ai",
    "model": "acme-llm-1",
    "input_per_mtok": "2",
    "output_per_mtok": "8",
    "cache_read_per_mtok": "",
    "cache_write_per_mtok": "",
}


def test_it_lists_unpriced_models_and_prices(client_as, project):
    seen_unpriced(project, spans=12)
    ModelPrice.objects.create(
        project=project,
        provider="",
        model="house-model",
        input_per_mtok=1,
        output_per_mtok=Decimal("0.1"),
        cache_read_per_mtok=Decimal("0.075"),
    )

    response = client_as("admin").get(reverse("price-list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "acme-llm-1" in html and "12" in html
    assert "?project=acme&amp;provider=acme-ai&amp;model=acme-llm-1#add-price" in html
    assert "house-model" in html and "any provider" in html
    assert ">$1<" in html and ">$0.10<" in html and ">$0.075<" in html
    assert "= input" in html  # no cache write price of its own


def test_the_add_link_fills_in_the_form(client_as, project):
    response = client_as("admin").get(
        reverse("price-list"), {"project": "acme", "provider": "acme-ai", "model": "acme-llm-1"}
    )

    html = response.content.decode()
    assert 'value="acme-llm-1"' in html
    assert '<option value="acme" selected>' in html


def test_adding_a_price_reprices_the_waiting_spans_and_their_runs(client_as, project):
    run = unpriced_llm_run(project)
    seen_unpriced(project)

    response = client_as("admin").post(reverse("price-list"), PRICE, follow=True)

    assert response.status_code == 200
    assert "1 stored span repriced" in response.content.decode()
    span = run.spans.get(kind="llm")
    # 1M input tokens at $2 + 100k output tokens at $8 per million.
    assert span.cost_usd == Decimal("2.8")
    assert span.cost_known
    run.refresh_from_db()
    assert run.cost_usd == Decimal("2.8")
    assert run.cost_known
    assert not UnpricedModel.objects.exists()


def test_cache_tokens_use_their_rates_or_the_input_rate(client_as, project):
    own_rates = unpriced_llm_run(
        project, model="m-own", cache_read_tokens=400_000, cache_write_tokens=100_000
    )
    input_rate = unpriced_llm_run(
        project, model="m-input", cache_read_tokens=400_000, cache_write_tokens=100_000
    )
    client = client_as("admin")

    client.post(
        reverse("price-list"),
        PRICE | {"model": "m-own", "cache_read_per_mtok": "0.5", "cache_write_per_mtok": "4"},
    )
    client.post(reverse("price-list"), PRICE | {"model": "m-input"})

    # 500k plain input at $2 (1.0), 400k cache reads at $0.5 (0.2), 100k writes at $4 (0.4),
    # 100k output at $8 (0.8).
    assert own_rates.spans.get(kind="llm").cost_usd == Decimal("2.4")
    # Without cache rates every input token is billed at the input rate.
    assert input_rate.spans.get(kind="llm").cost_usd == Decimal("2.8")


def test_a_run_stays_unknown_while_another_model_lacks_a_price(client_as, project):
    run = unpriced_llm_run(project)
    Span.objects.create(
        project=project,
        run=run,
        trace_id=run.trace_id,
        span_id="ffffffffffffff02",
        parent_span_id=run.spans.get(parent_span_id="").span_id,
        kind="llm",
        name="second call",
        model="other-model",
        cost_usd=None,
        cost_known=False,
        started_at=run.started_at,
        ended_at=run.ended_at,
    )

    client_as("admin").post(reverse("price-list"), PRICE)

    run.refresh_from_db()
    assert run.cost_usd == Decimal("2.8")
    assert not run.cost_known


def test_a_price_without_provider_covers_every_provider_but_only_its_project(
    client_as, project, other_project
):
    ours = unpriced_llm_run(project, provider="vendor-a")
    also_ours = unpriced_llm_run(project, provider="vendor-b")
    theirs = unpriced_llm_run(other_project, provider="vendor-a")
    seen_unpriced(project, provider="vendor-a")
    seen_unpriced(other_project, provider="vendor-a")

    client_as("admin").post(reverse("price-list"), PRICE | {"provider": ""})

    assert Run.objects.get(pk=ours.pk).cost_known
    assert Run.objects.get(pk=also_ours.pk).cost_known
    assert not Run.objects.get(pk=theirs.pk).cost_known
    assert list(UnpricedModel.objects.values_list("project__name", flat=True)) == ["globex"]


def test_already_priced_spans_are_left_alone(client_as, project):
    run = make_run(project, spans=2)
    run.spans.filter(parent_span_id__gt="").update(
        kind="llm", model="acme-llm-1", provider="acme-ai", cost_usd=Decimal("9"), cost_known=True
    )

    client_as("admin").post(reverse("price-list"), PRICE)

    assert run.spans.get(kind="llm").cost_usd == Decimal("9")


def test_a_second_price_for_the_same_model_is_refused(client_as, project):
    client = client_as("admin")
    client.post(reverse("price-list"), PRICE)

    response = client.post(reverse("price-list"), PRICE)

    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert ModelPrice.objects.count() == 1


def test_a_negative_or_missing_rate_is_refused(client_as, project):
    response = client_as("admin").post(reverse("price-list"), PRICE | {"output_per_mtok": ""})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ModelPrice.objects.exists()


def test_empty_states(client_as):
    html = client_as("admin").get(reverse("price-list")).content.decode()

    assert "Every model seen so far has a price." in html
    assert "No prices of your own yet." in html
    assert "Create a project first" in html


def test_model_names_are_escaped(client_as, project):
    UnpricedModel.objects.create(
        project=project,
        provider="<b>x</b>",
        model="<script>alert(1)</script>",
        last_seen_at=timezone.now(),
    )
    make_agent(project)

    html = client_as("admin").get(reverse("price-list")).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "model=%3Cscript%3Ealert%281%29%3C/script%3E" in html
