"""Prices as config, and the one function that turns a request's usage into dollars.

Prices change more often than code ships, so they live in ``[pricing."MODEL"]`` tables of
routing.toml; the table below is only the shipped default (Gemini list prices, USD per 1M
tokens, late 2026), and a config entry replaces a default entry of the same name whole.

Billing rules this module encodes (Google's pricing page):

- ``promptTokenCount`` *includes* cached tokens: cached tokens bill at the cached rate and are
  subtracted from the input billed at the full rate (never charged twice).
- Thinking tokens bill as output. The adapters already count them inside ``output_tokens``
  (OpenAI's ``completion_tokens`` = candidates + thoughts), so they are not added again.
- The long-context tier applies to the *whole* request when its prompt exceeds the threshold
  (200k tokens for the Pro models): every input, cached and output token uses the long rates.
- A model with no price gets ``None``, never 0: a zero would hide spend in every report.
- An explicit context cache also bills storage, per 1M tokens per hour it is kept: charged
  once, to the request that created the entry, for its whole TTL (``storage``).
- ``saved`` is what the cached tokens did not cost: the same tokens at the input rate, less
  what they cost at the cached rate (the report's "saved" column).
- Google Search grounding bills per grounded request (``grounding_per_1k``, USD per 1,000),
  beside the tokens; it is added when the answer shows a search was used. No default: the
  rate and its free tier differ per model family and change, so a deployment states its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gemini_proxy.adapters.base import Usage
from gemini_proxy.config.table import Table

PER = 1_000_000.0
LONG_CONTEXT_TOKENS = 200_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. ``*_long`` apply when the prompt exceeds ``long_context_threshold``."""

    input: float
    output: float
    cached: float | None = None  # None: no cache discount known, cached tokens bill as input
    input_long: float | None = None  # None: no long-context tier, the base rates always apply
    output_long: float | None = None
    cached_long: float | None = None
    long_context_threshold: int = LONG_CONTEXT_TOKENS
    storage: float | None = None  # USD per 1M tokens per hour of an explicit context cache
    # USD per 1,000 requests grounded with Google Search (Google bills grounding per request,
    # beside the tokens); None: no fee known, none added.
    grounding_per_1k: float | None = None

    def _rates(self, usage: Usage) -> tuple[float, float, float]:
        """(input, output, cached) rates for this request's prompt size."""
        if self.input_long is not None and usage.input_tokens > self.long_context_threshold:
            rate_out = self.output if self.output_long is None else self.output_long
            return self.input_long, rate_out, _first(self.cached_long, self.cached, self.input_long)
        return self.input, self.output, _first(self.cached, self.input)

    def cost(self, usage: Usage) -> float:
        rate_in, rate_out, rate_cached = self._rates(usage)
        cached = min(usage.cached_tokens, usage.input_tokens)
        fresh = usage.input_tokens - cached
        stored = usage.cache_storage_token_hours * (self.storage or 0.0)
        total = (fresh * rate_in + cached * rate_cached + usage.output_tokens * rate_out + stored) / PER
        if self.grounding_per_1k is not None and "google_search" in usage.builtin_tools:
            total += self.grounding_per_1k / 1000.0
        return total

    def saved(self, usage: Usage) -> float:
        """What the cached tokens did not cost (input rate less cached rate)."""
        rate_in, _, rate_cached = self._rates(usage)
        return min(usage.cached_tokens, usage.input_tokens) * (rate_in - rate_cached) / PER


def _first(*rates: float | None) -> float:
    return next(r for r in rates if r is not None)


_PRO_25 = Price(1.25, 10.00, 0.125, input_long=2.50, output_long=15.00, cached_long=0.25, storage=4.50)
_PRO_3 = Price(2.00, 12.00, 0.20, input_long=4.00, output_long=18.00, cached_long=0.40, storage=4.50)

# Shipped defaults: the Gemini Developer API list prices (standard, not Batch API) for the
# models the project's notes price; checked against public pricing summaries. Newer models
# (gemini-3-flash-preview, gemini-3.5-flash, ...) are deliberately absent until verified: add
# them in routing.toml, and until then they log cost_usd null rather than a guessed number.
DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gemini-2.5-flash": Price(0.30, 2.50, 0.03, storage=1.00),
        "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.01, storage=1.00),
        "gemini-2.5-pro": _PRO_25,
        "gemini-3-pro-preview": _PRO_3,
        "gemini-3.1-pro-preview": _PRO_3,
        "gemini-embedding-001": Price(0.15, 0.0),
    }
)


@dataclass(frozen=True, slots=True)
class PriceBook:
    """Prices by model name; ``"upstream:model"`` entries win over a bare model name."""

    prices: Mapping[str, Price] = field(default_factory=lambda: DEFAULT_PRICES)

    def lookup(self, upstream: str | None, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.removeprefix("models/")  # Gemini's resource form of the same name
        if upstream:
            hit = self.prices.get(f"{upstream}:{name}")
            if hit is not None:
                return hit
        return self.prices.get(name)

    def cost(self, upstream: str | None, model: str | None, usage: Usage) -> float | None:
        price = self.lookup(upstream, model)
        return None if price is None else price.cost(usage)

    def saved(self, upstream: str | None, model: str | None, usage: Usage) -> float | None:
        price = self.lookup(upstream, model)
        return None if price is None else price.saved(usage)


def parse_pricing(t: Table) -> PriceBook:
    """``[pricing."MODEL"]`` tables over the defaults; a configured name replaces its default."""
    prices = dict(DEFAULT_PRICES)
    for name in list(t.data):
        prices[name] = _parse_price(t.table(name))
    t.done()
    return PriceBook(MappingProxyType(prices))


def _parse_price(t: Table) -> Price:
    def rate(name: str, required: bool = False) -> float | None:
        value: float | None = t.pop(name, float, required=required)
        if value is not None and value < 0:
            raise t.error(name, f"must be 0 or more (USD per 1M tokens), got {value!r}")
        return value

    base_in, base_out = rate("input", True), rate("output")
    assert base_in is not None
    price = Price(
        input=base_in,
        output=0.0 if base_out is None else base_out,
        cached=rate("cached"),
        input_long=rate("input_long"),
        output_long=rate("output_long"),
        cached_long=rate("cached_long"),
        long_context_threshold=t.positive("long_context_threshold", int, LONG_CONTEXT_TOKENS),
        storage=rate("storage"),
        grounding_per_1k=rate("grounding_per_1k"),
    )
    if price.input_long is None and (price.output_long is not None or price.cached_long is not None):
        raise t.error("input_long", "is required when output_long or cached_long is set", "add input_long = ...")
    t.done()
    return price
