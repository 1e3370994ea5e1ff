"""Cost for every priced model and both tiers, and prices as config."""

from __future__ import annotations

import pytest

from gemini_proxy.adapters.base import Usage
from gemini_proxy.config import ConfigError
from gemini_proxy.config.pricing import DEFAULT_PRICES, Price, PriceBook
from tests.conftest import config_toml, make_config

M = 1_000_000
# model, input tokens (incl. cached), cached, output (incl. thinking), expected USD.
# Expected values are written out from the price table in shared/gemini-notes.md, not computed.
CASES = [
    ("gemini-2.5-flash", M, 0, 0, 0.30),
    ("gemini-2.5-flash", 0, 0, M, 2.50),
    ("gemini-2.5-flash", M, M, 0, 0.03),
    ("gemini-2.5-flash", 2 * M, M, M, 0.30 + 0.03 + 2.50),  # no long tier: base rates at any size
    ("gemini-2.5-flash-lite", M, 0, M, 0.10 + 0.40),
    ("gemini-2.5-flash-lite", M, M // 2, 0, 0.05 + 0.005),
    ("gemini-2.5-pro", 200_000, 0, M, 0.25 + 10.00),  # exactly 200k: still the base tier
    ("gemini-2.5-pro", 100_000, 50_000, 10_000, 0.0625 + 0.00625 + 0.10),
    ("gemini-2.5-pro", 200_001, 0, 0, 200_001 * 2.50 / M),  # just over: the long tier
    ("gemini-2.5-pro", 400_000, 100_000, M, 0.75 + 0.025 + 15.00),
    ("gemini-3-pro-preview", M // 10, 0, M // 10, 0.20 + 1.20),
    ("gemini-3-pro-preview", 300_000, 100_000, M // 10, 0.80 + 0.04 + 1.80),
    ("gemini-3.1-pro-preview", 150_000, 50_000, 1000, 0.20 + 0.01 + 0.012),
    ("gemini-3.1-pro-preview", 250_000, 0, 1000, 1.00 + 0.018),
    ("gemini-embedding-001", M, 0, 0, 0.15),
]


@pytest.mark.parametrize(("model", "tokens_in", "cached", "tokens_out", "expected"), CASES)
def test_default_price_of_every_model_and_tier(
    model: str, tokens_in: int, cached: int, tokens_out: int, expected: float
) -> None:
    usage = Usage(input_tokens=tokens_in, output_tokens=tokens_out, cached_tokens=cached)
    assert PriceBook().cost("google", model, usage) == pytest.approx(expected)


def test_every_default_model_has_a_case() -> None:
    assert {c[0] for c in CASES} == set(DEFAULT_PRICES)


def test_thinking_tokens_bill_once_as_output() -> None:
    # Adapters count thoughts inside output_tokens (OpenAI's completion_tokens); not added again.
    usage = Usage(input_tokens=0, output_tokens=1000, thinking_tokens=800)
    assert PriceBook().cost(None, "gemini-2.5-flash", usage) == pytest.approx(1000 * 2.50 / M)


def test_unknown_model_has_no_cost_rather_than_zero() -> None:
    assert PriceBook().cost("google", "gemini-9-flash", Usage(input_tokens=10)) is None
    assert PriceBook().cost("google", None, Usage()) is None


def test_resource_style_model_name_is_priced() -> None:
    assert PriceBook().lookup(None, "models/gemini-2.5-flash") is DEFAULT_PRICES["gemini-2.5-flash"]


def _config(pricing: str):  # type: ignore[no-untyped-def]
    return make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1", pricing))


def test_config_overrides_a_default_and_adds_new_models() -> None:
    cfg = _config(
        """
[pricing."gemini-2.5-flash"]
input = 0.15
output = 1.25
cached = 0.015

[pricing."gemini-3.5-flash"]
input = 1.50
output = 9.00
cached = 0.15
input_long = 3.0
output_long = 12.0
long_context_threshold = 100000

[pricing."gateway:gemini-2.5-flash"]
input = 0.5
output = 3.0
"""
    )
    book = cfg.pricing
    assert book.lookup("google", "gemini-2.5-flash") == Price(0.15, 1.25, 0.015)
    assert book.lookup("google", "gemini-2.5-pro") is DEFAULT_PRICES["gemini-2.5-pro"]  # untouched default
    big = Usage(input_tokens=100_001, output_tokens=0)
    assert book.cost("google", "gemini-3.5-flash", big) == pytest.approx(100_001 * 3.0 / M)
    # an upstream-qualified entry wins for that upstream only; no cached rate -> cached bills as input
    usage = Usage(input_tokens=M, cached_tokens=M)
    assert book.cost("gateway", "gemini-2.5-flash", usage) == pytest.approx(0.5)
    assert book.cost("google", "gemini-2.5-flash", usage) == pytest.approx(0.015)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('[pricing."m"]\noutput = 1.0\n', "pricing.m.input"),
        ('[pricing."m"]\ninput = -1.0\n', "pricing.m.input"),
        ('[pricing."m"]\ninput = 1.0\ninptu_long = 2.0\n', "pricing.m.inptu_long"),
        ('[pricing."m"]\ninput = 1.0\noutput_long = 2.0\n', "pricing.m.input_long"),
        ('[pricing."m"]\ninput = "cheap"\n', "pricing.m.input"),
        ("[logging]\nlog_content = true\n", "logging.log_content"),
        ("[logging]\nlog_content_tasks = [1]\n", "logging.log_content_tasks[0]"),
    ],
)
def test_bad_pricing_or_logging_config_names_the_key(table: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(table)
    assert info.value.key == key


def test_logging_config_defaults_to_no_content() -> None:
    cfg = _config("")
    assert cfg.logging.file is None
    assert not cfg.logging.wants_content("team-a", "summary")
    cfg = _config('[logging]\nfile = "/tmp/x.log"\nlog_content_teams = ["team-a"]\n')
    assert cfg.logging.file == "/tmp/x.log"
    assert cfg.logging.wants_content("team-a", None) and not cfg.logging.wants_content("team-b", "summary")


def test_a_created_context_cache_bills_storage_and_cached_tokens_report_what_they_saved() -> None:
    usage = Usage(input_tokens=10_000, output_tokens=100, cached_tokens=8_000, cache_storage_token_hours=8_000 * 0.5)
    book = PriceBook()
    fresh_cost = (2_000 * 0.30 + 8_000 * 0.03 + 100 * 2.50) / M
    assert book.cost(None, "gemini-2.5-flash", usage) == pytest.approx(fresh_cost + 4_000 * 1.00 / M)
    assert book.saved(None, "gemini-2.5-flash", usage) == pytest.approx(8_000 * (0.30 - 0.03) / M)
    priced = _config('[pricing."gemini-9-flash"]\ninput = 1.0\ncached = 0.1\nstorage = 2.0\n').pricing
    assert priced.cost(None, "gemini-9-flash", Usage(cache_storage_token_hours=1_000_000)) == pytest.approx(2.0)
    no_rate = _config('[pricing."gemini-9-flash"]\ninput = 1.0\n').pricing
    assert no_rate.cost(None, "gemini-9-flash", Usage(cache_storage_token_hours=1_000_000)) == 0.0
