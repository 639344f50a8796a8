"""Token prices: a project's own ModelPrice rows first, then genai-prices' bundled data.

    pricer = Pricer(project)
    pricer.price("openai", "gpt-4o", input_tokens=1200, output_tokens=80,
                 cache_read_tokens=1000, cache_write_tokens=0, at=started_at)  -> Decimal | None

None means "no known price" (never zero). Token counts follow OTel: input_tokens includes cache
reads and writes, which genai-prices also expects; it bills the cached part at the cache rates
and the rest at the input rate.

genai-prices' calc_price costs 100-300 µs a call, too slow for ingest. So the model lookup is
cached per (provider, model), and the cost is computed here with genai-prices' own
calc_unit_price (which handles tiers) on the ModelPrice it resolved, for the four token counts
OTel reports. Prices for usage OTel never reports (audio, images, 1-hour cache writes, searches)
meet a zero count; tests/traces/test_pricing.py checks the result against calc_price itself.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from genai_prices import types as price_types
from genai_prices.data_snapshot import get_snapshot

# OTel gen_ai.provider.name (and OpenInference llm.provider) values genai-prices does not
# recognise by itself, mapped to its provider ids (checked against its bundled data).
# None: no matching genai-prices provider, so the model name alone picks one.
PROVIDER_ALIASES: dict[str, str | None] = {
    "x_ai": "x-ai",
    "xai": "x-ai",
    "gcp.gen_ai": "google",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "fireworks_ai": "fireworks",
    # watsonx has no entry in genai-prices; its hosted models (granite, llama, mistral) are
    # found by name instead. A project can pin real watsonx prices with a ModelPrice row.
    "ibm.watsonx.ai": None,
}

# The only usage the cockpit reports: OTel spans carry no audio, image or 1-hour-cache counts,
# so every other price in genai-prices' data meets a zero count and contributes nothing.
_TOKEN_PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
_MILLION = 1_000_000
_ZERO = Decimal(0)


def genai_provider_id(provider: str) -> str | None:
    """The genai-prices provider id for an OTel/OpenInference provider name ("" → None)."""
    name = provider.strip().lower()
    if not name:
        return None
    return PROVIDER_ALIASES.get(name, name)


def model_price_from_row(row) -> price_types.ModelPrice:
    """A traces.models.ModelPrice row as a genai-prices ModelPrice (per-million-token rates)."""
    return price_types.ModelPrice(
        input_mtok=Decimal(row.input_per_mtok),
        output_mtok=Decimal(row.output_per_mtok),
        cache_read_mtok=None
        if row.cache_read_per_mtok is None
        else Decimal(row.cache_read_per_mtok),
        cache_write_mtok=None
        if row.cache_write_per_mtok is None
        else Decimal(row.cache_write_per_mtok),
    )


def cost_from_row(
    row,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal:
    """The cost of one call at a ModelPrice row's rates (cache tokens billed at input rate if unset)."""
    return cost_from_model_price(
        model_price_from_row(row),
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
    )


def _fast_plan(model_price: price_types.ModelPrice) -> tuple:
    """(input, output, cache_read, cache_write, requests) prices of a genai-prices ModelPrice."""
    return tuple(getattr(model_price, key) for key in (*_TOKEN_PRICE_KEYS, "requests_kcount"))


def cost_from_model_price(
    model_price: price_types.ModelPrice,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    plan=None,
) -> Decimal:
    plan = plan or _fast_plan(model_price)
    input_price, output_price, cache_read_price, cache_write_price, request_price = plan
    # Like genai-prices, cache tokens are carved out of input only when they have a price of
    # their own; otherwise they stay in input and are billed at the input rate.
    uncached = input_tokens
    if cache_read_price is not None:
        uncached -= cache_read_tokens
    if cache_write_price is not None:
        uncached -= cache_write_tokens
    if uncached < 0:
        raise ValueError("cache tokens exceed input tokens")
    # Tiers are chosen by total input tokens, as genai-prices does.
    total = _ZERO
    for price, count in (
        (input_price, uncached),
        (output_price, output_tokens),
        (cache_read_price, cache_read_tokens),
        (cache_write_price, cache_write_tokens),
    ):
        if price is not None and count:
            total += price_types.calc_unit_price(price, count, input_tokens, _MILLION)
    if request_price is not None:
        total += price_types.calc_unit_price(request_price, 1, input_tokens, 1000)
    return total


# genai-prices' bundled data never changes inside a process, so what it says about a model is
# cached for every Pricer: (genai provider id, model) → (provider, ModelInfo), or None when it
# has no price; and id(ModelPrice) → (ModelPrice, fast plan). Bounded against junk model names.
_MODELS: dict[tuple[str | None, str], tuple | None] = {}
_PLANS: dict[int, tuple] = {}
_CACHE_LIMIT = 10_000


def provider_of_model(model: str) -> str:
    """The provider genai-prices knows for a model name ("gpt-4o" → "openai"), or ""."""
    found = Pricer._model_info(None, model.strip().lower())
    return found[0].id if found else ""


class Pricer:
    """Prices calls for one project. Cheap to reuse across a batch; make one per request."""

    def __init__(self, project=None):
        self.project = project
        self._overrides: dict[tuple[str, str], tuple] | None = None

    def _load_overrides(self) -> dict[tuple[str, str], tuple]:
        overrides: dict[tuple[str, str], tuple] = {}
        if self.project is not None:
            from traces.models import ModelPrice

            for row in ModelPrice.objects.filter(project=self.project):
                model_price = model_price_from_row(row)
                overrides[(row.provider.strip().lower(), row.model.strip().lower())] = (
                    model_price,
                    _fast_plan(model_price),
                )
        return overrides

    def _override(self, provider: str, model: str):
        if self._overrides is None:
            self._overrides = self._load_overrides()
        if not self._overrides:
            return None
        return self._overrides.get((provider, model)) or self._overrides.get(("", model))

    @staticmethod
    def _model_info(provider_id: str | None, model: str):
        key = (provider_id, model)
        try:
            return _MODELS[key]
        except KeyError:
            pass
        try:
            found = get_snapshot().find_provider_model(model, None, provider_id, None)
        except LookupError:
            found = None
        if len(_MODELS) >= _CACHE_LIMIT:
            _MODELS.clear()
        _MODELS[key] = found
        return found

    @staticmethod
    def _plan_for(model_price: price_types.ModelPrice):
        cached = _PLANS.get(id(model_price))
        # The ModelPrice is kept in the value so its id cannot be reused while cached.
        if cached is None or cached[0] is not model_price:
            if len(_PLANS) >= _CACHE_LIMIT:
                _PLANS.clear()
            cached = (model_price, _fast_plan(model_price))
            _PLANS[id(model_price)] = cached
        return cached[1]

    def price(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        at: datetime | None = None,
    ) -> Decimal | None:
        """The cost in USD, or None when no price is known for this provider and model."""
        provider_name = provider.strip().lower()
        model_name = model.strip().lower()
        if not model_name:
            return None
        override = self._override(provider_name, model_name)
        if override is not None:
            model_price, plan = override
        else:
            found = self._model_info(genai_provider_id(provider_name), model_name)
            if found is None:
                return None
            model_price = found[1].get_prices(at or datetime.now().astimezone())
            plan = self._plan_for(model_price)
        try:
            return cost_from_model_price(
                model_price,
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_tokens,
                plan,
            )
        except ValueError:
            # genai-prices refuses inconsistent usage (e.g. more cached than total input).
            return None
