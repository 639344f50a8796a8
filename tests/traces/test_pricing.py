"""Token pricing: genai-prices, provider aliases and per-project overrides."""

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from traces.models import ModelPrice
from traces.pricing import Pricer, cost_from_model_price, cost_from_row

AT = datetime(2026, 6, 1, tzinfo=UTC)


def expected(model, provider_id, **tokens):
    return calc_price(
        Usage(**tokens), model_ref=model, provider_id=provider_id, genai_request_timestamp=AT
    ).total_price


def test_it_prices_like_genai_prices_including_cache_tokens():
    tokens = {
        "input_tokens": 12_000,
        "output_tokens": 800,
        "cache_read_tokens": 9_000,
        "cache_write_tokens": 2_000,
    }
    got = Pricer().price("anthropic", "claude-sonnet-4-5", at=AT, **tokens)
    assert got == expected("claude-sonnet-4-5", "anthropic", **tokens)
    # The cached part is cheaper than fresh input: pricing everything as input would cost more.
    assert got != expected("claude-sonnet-4-5", "anthropic", input_tokens=12_000, output_tokens=800)


@pytest.mark.parametrize(
    ("otel_provider", "model", "genai_provider"),
    [
        ("x_ai", "grok-3", "x-ai"),
        ("gcp.gen_ai", "gemini-2.5-flash", "google"),
        ("gcp.vertex_ai", "gemini-2.5-pro", "google"),
        ("azure.ai.openai", "gpt-4o", "azure"),
        ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "aws"),
        ("mistral_ai", "mistral-large-latest", "mistral"),
    ],
)
def test_it_resolves_otel_provider_names(otel_provider, model, genai_provider):
    got = Pricer().price(otel_provider, model, input_tokens=1000, output_tokens=100, at=AT)
    assert got is not None
    assert got == expected(model, genai_provider, input_tokens=1000, output_tokens=100)


def test_it_finds_the_provider_from_the_model_when_none_is_given():
    got = Pricer().price("", "gpt-4o", input_tokens=1000, output_tokens=100, at=AT)
    assert got == expected("gpt-4o", None, input_tokens=1000, output_tokens=100)


def test_an_unknown_model_has_no_price_not_a_zero_price():
    assert Pricer().price("openai", "gpt-nonexistent-9", input_tokens=10, at=AT) is None
    assert Pricer().price("ollama", "llama3", input_tokens=10, at=AT) is None


def test_the_fast_path_matches_genai_prices_for_many_usages():
    pricer = Pricer()
    for input_tokens, cache_read in [(0, 0), (1, 0), (250_000, 100_000), (300_000, 0)]:
        tokens = {
            "input_tokens": input_tokens,
            "output_tokens": 1234,
            "cache_read_tokens": cache_read,
        }
        # gemini-2.5-pro has tiered prices above 200k input tokens.
        assert pricer.price("google", "gemini-2.5-pro", at=AT, **tokens) == expected(
            "gemini-2.5-pro", "google", **tokens
        )


def test_the_fast_path_matches_genai_prices_for_every_bundled_model():
    # Models with audio, image or 1-hour cache prices included: OTel never reports those
    # counts, so they must contribute nothing, exactly as in genai-prices' own calculation.
    rng = random.Random(7)
    checked = 0
    for provider in get_snapshot().providers:
        for model in provider.models:
            model_price = model.get_prices(AT)
            input_tokens = rng.randint(0, 2_000_000)
            usage = {
                "input_tokens": input_tokens,
                "output_tokens": rng.randint(0, 50_000),
                "cache_read_tokens": rng.randint(0, input_tokens // 2),
                "cache_write_tokens": rng.randint(0, input_tokens // 3),
            }
            want = model_price.calc_price(Usage(**usage))["total_price"]
            assert cost_from_model_price(model_price, *usage.values()) == want, model.id
            checked += 1
    assert checked > 500


@pytest.mark.django_db
def test_a_project_price_overrides_genai_prices(project):
    ModelPrice.objects.create(
        project=project,
        provider="",
        model="gpt-4o",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
        cache_read_per_mtok=Decimal("0.5"),
    )
    got = Pricer(project).price(
        "openai",
        "gpt-4o",
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_tokens=400_000,
    )
    # 600k fresh input at $1/M + 400k cached at $0.5/M + 1M output at $2/M.
    assert got == Decimal("0.6") + Decimal("0.2") + Decimal("2")


@pytest.mark.django_db
def test_a_project_price_can_price_a_model_genai_prices_lacks(project):
    row = ModelPrice.objects.create(
        project=project,
        provider="acme-llm",
        model="house-model",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("4"),
    )
    pricer = Pricer(project)
    got = pricer.price("acme-llm", "house-model", input_tokens=2_000_000, output_tokens=500_000)
    assert got == Decimal("8")
    assert pricer.price("other", "house-model", input_tokens=1, output_tokens=1) is None
    # Without a cache price, cache reads are billed as input.
    assert (
        cost_from_row(row, input_tokens=1_000_000, output_tokens=0, cache_read_tokens=500_000) == 3
    )


@pytest.mark.django_db
def test_overrides_are_loaded_once_per_pricer(project, django_assert_num_queries):
    pricer = Pricer(project)
    with django_assert_num_queries(1):
        for _ in range(5):
            pricer.price("openai", "gpt-4o", input_tokens=10, output_tokens=10)
