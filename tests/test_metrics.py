"""/metrics scraped and parsed with prometheus_client's own parser."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gemini_proxy.adapters.base import Usage
from gemini_proxy.http.appkeys import TELEMETRY
from gemini_proxy.observe import metrics as metrics_module
from gemini_proxy.observe.metrics import Metrics
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.observe.telemetry import Telemetry
from gemini_proxy.resilience.outcome import Attempt
from tests.conftest import Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini, error, text_answer

USER = [{"role": "user", "content": "Hi"}]


async def scrape(proxy: Proxy) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session:
        async with session.get(proxy.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    return parse(text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_tokens_cost_and_latency(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        text_answer("a", prompt_tokens=1000, output_tokens=100, thoughts=20, cached=400),
        text_answer("streamed answer", prompt_tokens=10, output_tokens=5),
        error(400, "bad"),
    )
    client = proxy.client()
    await client.chat.completions.create(model="fast", messages=USER, extra_headers={"x-task": "summary"})
    stream = await client.chat.completions.create(model="pro", messages=USER, stream=True)
    assert [c async for c in stream]
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="pro", messages=USER)
    m = await scrape(proxy)
    flash = {"team": "-", "task": "summary", "model": "gemini-2.5-flash"}
    assert value(m, "gemini_proxy_requests_total", **flash, status="200") == 1
    assert value(m, "gemini_proxy_requests_total", team="-", task="-", model="gemini-2.5-pro", status="200") == 1
    assert value(m, "gemini_proxy_requests_total", team="-", task="-", model="gemini-2.5-pro", status="400") == 1
    assert value(m, "gemini_proxy_tokens_total", **flash, kind="input") == 1000
    assert value(m, "gemini_proxy_tokens_total", **flash, kind="output") == 120
    assert value(m, "gemini_proxy_tokens_total", **flash, kind="cached") == 400
    assert value(m, "gemini_proxy_tokens_total", **flash, kind="thinking") == 20
    assert value(m, "gemini_proxy_cost_usd_total", **flash) == pytest.approx(
        (600 * 0.30 + 400 * 0.03 + 120 * 2.5) / 1e6
    )
    assert (
        value(m, "gemini_proxy_request_latency_seconds_count", task="summary", model="gemini-2.5-flash", stream="false")
        == 1
    )
    assert value(m, "gemini_proxy_ttft_seconds_count", task="-", model="gemini-2.5-pro") == 1
    assert value(m, "gemini_proxy_ttft_seconds_count", task="summary", model="gemini-2.5-flash") == 0
    assert not any("request_id" in dict(labels) for _, labels in m)


async def test_fallback_retry_and_429_by_limit_are_counted(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        error(429, "q", quota_id="GenerateRequestsPerDayPerProjectPerModel"),
        text_answer("ok"),
        # pro has no fallback: the first 429 and its 2 retries (the [retry] default) all fail.
        *[error(429, "q", quota_id="GenerateRequestsPerMinutePerProjectPerModel", retry_delay="0s")] * 3,
    )
    client = proxy.client()
    await client.chat.completions.create(model="fast", messages=USER)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="pro", messages=USER)
    m = await scrape(proxy)
    assert value(m, "gemini_proxy_upstream_rate_limited_total", upstream="google", limit="day") == 1
    assert value(m, "gemini_proxy_upstream_rate_limited_total", upstream="google", limit="minute") == 3
    assert value(m, "gemini_proxy_rate_limited_responses_total", limit="rate_limit_exceeded") == 1
    assert value(m, "gemini_proxy_retries_total", task="-", model="gemini-2.5-flash-lite") == 1
    reason = [dict(k[1])["reason"] for k in m if k[0] == "gemini_proxy_fallbacks_total"]
    assert len(reason) == 1 and reason[0] != "-"


async def test_registered_snapshot_is_exported_and_a_broken_one_is_skipped(proxy: Proxy) -> None:
    metrics = proxy.app[TELEMETRY].metrics
    metrics.register_source("lanes", lambda: {"queue_depth": {"batch": 3, "online": 0}, "workers": 4}, label="lane")

    def broken() -> dict[str, float]:
        raise RuntimeError("lane table is being rebuilt")

    metrics.register_source("limits", broken)
    m = await scrape(proxy)
    assert value(m, "gemini_proxy_lanes_queue_depth", lane="batch") == 3
    assert value(m, "gemini_proxy_lanes_queue_depth", lane="online") == 0
    assert value(m, "gemini_proxy_lanes_workers") == 4


async def test_each_app_has_its_own_registry(start_proxy: Any, fake_gemini: FakeGemini) -> None:
    first: Proxy = await start_proxy()
    second: Proxy = await start_proxy()
    await first.client().chat.completions.create(model="pro", messages=USER)
    key = {"team": "-", "task": "-", "model": "gemini-2.5-pro", "status": "200"}
    assert value(await scrape(first), "gemini_proxy_requests_total", **key) == 1
    assert value(await scrape(second), "gemini_proxy_requests_total", **key) == 0


def _record(model: str, **kw: Any) -> RequestRecord:
    record = RequestRecord(request_id="req_x", model_used=model, upstream="google", status_code=200, **kw)
    record.attempts.append(Attempt(upstream="google", model=model, status=200))
    return record


def test_label_values_are_bounded_and_schema_violations_counted() -> None:
    telemetry = Telemetry(Metrics(max_label_values=2))
    config = make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1"))
    for model in ("gemini-2.5-flash", "gemini-2.5-pro", "client-made-up-1", "client-made-up-2"):
        telemetry.emit(_record(model, schema_violations=1), config)
    m = parse(telemetry.metrics.render().decode())
    models = {dict(labels)["model"] for name, labels in m if name == "gemini_proxy_requests_total"}
    assert models == {"gemini-2.5-flash", "gemini-2.5-pro", "other"}
    assert value(m, "gemini_proxy_schema_violations_total", task="-", model="other") == 2
    assert value(m, "gemini_proxy_unpriced_requests_total", model="other") == 2


async def test_lane_queue_depth_and_wait_are_exported(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    await proxy.client().chat.completions.create(model="fast", messages=USER, extra_headers={"x-lane": "batch"})
    m = await scrape(proxy)
    assert value(m, "gemini_proxy_lane_queue_depth", lane="batch") == 0
    assert value(m, "gemini_proxy_lane_in_flight", lane="online") == 0
    assert value(m, "gemini_proxy_lane_concurrency", lane="online") >= 1
    assert value(m, "gemini_proxy_queue_wait_seconds_count", lane="batch") == 1
    assert value(m, "gemini_proxy_queue_wait_seconds_count", lane="online") == 0


def test_counts_stay_right_past_the_cached_label_combinations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children are looked up once per (team, task, model, status, stream); past the cap they are
    still counted, just not kept."""
    monkeypatch.setattr(metrics_module, "_ONES_MAX", 2)
    telemetry = Telemetry(Metrics())
    config = make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1"))
    statuses = (200, 400, 429, 500, 502)
    for _ in range(3):
        for status in statuses:
            record = _record("gemini-2.5-flash")
            record.status_code = status
            telemetry.emit(record, config)
    assert len(telemetry.metrics._ones) == 2
    m = parse(telemetry.metrics.render().decode())
    for status in statuses:
        labels = {"team": "-", "task": "-", "model": "gemini-2.5-flash", "status": str(status)}
        assert value(m, "gemini_proxy_requests_total", **labels) == 3
    assert (
        value(m, "gemini_proxy_request_latency_seconds_count", task="-", model="gemini-2.5-flash", stream="false") == 15
    )


def test_a_series_is_only_made_when_something_is_counted_in_it() -> None:
    telemetry = Telemetry(Metrics())
    config = make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1"))
    record = _record("gemini-2.5-flash")
    record.usage = Usage(input_tokens=10, output_tokens=5)  # priced, measured, no cache, no thinking
    telemetry.emit(record, config)
    names = {name for name, _ in parse(telemetry.metrics.render().decode())}
    assert "gemini_proxy_unpriced_requests_total" not in names
    assert "gemini_proxy_usage_estimated_requests_total" not in names
    assert "gemini_proxy_ttft_seconds_count" not in names  # not a stream
    kinds = {
        dict(labels)["kind"]
        for name, labels in parse(telemetry.metrics.render().decode())
        if name == "gemini_proxy_tokens_total"
    }
    assert kinds == {"input", "output"}


def test_one_upstream_429_is_counted_however_the_request_ended() -> None:
    telemetry = Telemetry(Metrics())
    config = make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1"))
    record = RequestRecord(request_id="req_x", status_code=499, error_type="client_disconnected")
    record.attempts.append(Attempt(upstream="google", model="gemini-2.5-flash", status=429, limit="minute"))
    telemetry.emit(record, config)  # the client left while the request backed off
    m = parse(telemetry.metrics.render().decode())
    assert value(m, "gemini_proxy_upstream_rate_limited_total", upstream="google", limit="minute") == 1


def test_audited_reads_are_counted_but_kept_out_of_the_latency_histogram() -> None:
    telemetry = Telemetry(Metrics())
    config = make_config(config_toml("http://127.0.0.1:1", "http://127.0.0.1:2/v1"))
    read = RequestRecord(request_id="req_r", endpoint="GET /v1/batches/{batch_id}", read=True, status_code=200)
    telemetry.emit(read, config)
    m = parse(telemetry.metrics.render().decode())
    assert value(m, "gemini_proxy_requests_total", team="-", task="-", model="-", status="200") == 1
    assert not [name for name, _ in m if name.startswith("gemini_proxy_request_latency_seconds")]
