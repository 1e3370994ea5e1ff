"""The failure table is the single source: classify(), the loop's tiers and the README agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.config.resilience import RetryPolicy
from gemini_proxy.resilience import backoff
from gemini_proxy.resilience.failures import RULES, TIERS, Failure, FailureClass, classify, render_table, to_client
from gemini_proxy.resilience.refusals import CircuitOpen, LimitReached, NoKey, Unsupported

ROOT = Path(__file__).resolve().parent.parent

# One failure per row of the table, each as the code would meet it.
EXAMPLES: dict[FailureClass, Failure] = {
    FailureClass.LIMITED: LimitReached("rpm", "rpm limit reached", upstream="google", retry_after_s=30.0),
    FailureClass.NO_KEY: NoKey("every key is out", upstream="google", code="keys_exhausted", status=429),
    FailureClass.UNSUPPORTED: Unsupported("does not serve embeddings", upstream="vertex"),
    FailureClass.CIRCUIT: CircuitOpen("cooling down", upstream="google", retry_after_s=12.0),
    FailureClass.TIMEOUT: UpstreamError(504, "timed out", upstream="google", timeout=True),
    FailureClass.CONNECTION: UpstreamError(502, "refused", upstream="google", connection=True),
    FailureClass.AUTH: UpstreamError(400, "API key not valid", upstream="google", code="API_KEY_INVALID"),
    FailureClass.QUOTA_DAY: UpstreamError(429, "per day", upstream="google", quota_scope="day"),
    FailureClass.RATE_LIMIT: UpstreamError(429, "slow down", upstream="google", retry_after_s=2.0),
    FailureClass.MODEL_GONE: UpstreamError(404, "models/x is not found", upstream="google"),
    FailureClass.CLIENT: UpstreamError(400, "bad field", upstream="google"),
    FailureClass.SERVER: UpstreamError(503, "overloaded", upstream="google"),
}


def readme_table() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- table: retry-tiers")
    body = text[text.index("\n", start) + 1 : text.index("<!-- /table: retry-tiers -->")]
    return body


def test_the_readme_retry_table_is_the_rendered_failure_table() -> None:
    assert readme_table() == render_table()


def test_every_class_has_a_rule_a_tier_and_an_example() -> None:
    assert {r.cls for r in RULES if r.cls is not None} == set(FailureClass) == set(TIERS) == set(EXAMPLES)


@pytest.mark.parametrize("cls", list(FailureClass), ids=lambda c: c.value)
def test_each_example_lands_in_its_own_row(cls: FailureClass) -> None:
    err = EXAMPLES[cls]
    assert classify(err) is cls
    first = next(r for r in RULES if r.match is not None and r.match(err))
    assert first.cls is cls


@pytest.mark.parametrize("cls", list(FailureClass), ids=lambda c: c.value)
def test_the_client_gets_the_status_the_table_names(cls: FailureClass) -> None:
    rule = next(r for r in RULES if r.cls is cls)
    status = to_client(EXAMPLES[cls]).status
    assert str(status) in rule.client or (cls is FailureClass.CLIENT and 400 <= status < 500)


@pytest.mark.parametrize("cls", list(FailureClass), ids=lambda c: c.value)
def test_decide_follows_the_tier(cls: FailureClass) -> None:
    import random

    tier = TIERS[cls]
    decision = backoff.decide(EXAMPLES[cls], cls, 0, RetryPolicy(), 60.0, random.Random(1))
    assert decision.action == tier.action
    if tier.retries is not None:  # retries used up: the next target
        used = getattr(RetryPolicy(), tier.retries)
        assert backoff.decide(EXAMPLES[cls], cls, used, RetryPolicy(), 60.0, random.Random(1)).action == "next"


def test_a_refusal_is_never_mistaken_for_the_upstream_verdict() -> None:
    # A 429 of our own limit must not rest a key or count as Google's per-minute quota.
    assert classify(EXAMPLES[FailureClass.LIMITED]) is FailureClass.LIMITED
    assert not isinstance(EXAMPLES[FailureClass.LIMITED], UpstreamError)
    assert to_client(EXAMPLES[FailureClass.LIMITED]).headers["Retry-After"] == "30"
