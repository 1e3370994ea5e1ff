"""Client access: team keys (hashed), allow-lists, RPM, daily budget, data residency — through the
real OpenAI SDK, whose exception classes say what a client sees."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import openai
import pytest
from yarl import URL

from gemini_proxy.adapters.base import Call
from gemini_proxy.config import ConfigError
from gemini_proxy.http.appkeys import METER
from gemini_proxy.routing.teams import hash_client_key
from tests.conftest import Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini, error, text_answer
from tests.fakes.openai import FakeOpenAI

ALPHA_KEY = "team-alpha-client-key-not-real"
CHINA_KEY = "team-china-client-key-not-real"
HI = [{"role": "user", "content": "hi"}]

TEAMS = f"""
[teams.alpha]
key_sha256 = ["{hash_client_key(ALPHA_KEY)}"]
allowed_tasks = ["summary"]
allowed_models = ["fast", "pro"]
daily_budget_usd = 5.0

[teams.china]
key_sha256 = ["{hash_client_key(CHINA_KEY)}"]
allowed_regions = ["cn"]
rpm = 2
"""


def regional(gemini_url: str, openai_url: str, extra: str = "") -> str:
    """The standard config with Google tagged "global" and the gateway "cn"."""
    return (
        config_toml(gemini_url, openai_url, extra)
        .replace('api_key_env = "TEST_GEMINI_KEY"', 'api_key_env = "TEST_GEMINI_KEY"\nregion = "global"')
        .replace('api_key_env = "TEST_GATEWAY_KEY"', 'api_key_env = "TEST_GATEWAY_KEY"\nregion = "cn"')
    )


@pytest.fixture
async def teams_proxy(start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> Proxy:
    proxy: Proxy = await start_proxy(config=make_config(regional(fake_gemini.url, fake_openai.url, TEAMS)))
    return proxy


async def test_missing_key_is_401(teams_proxy: Proxy) -> None:
    client = teams_proxy.client()
    with pytest.raises(openai.AuthenticationError) as info:  # the SDK drops an omitted header entirely
        await client.chat.completions.create(model="fast", messages=HI, extra_headers={"Authorization": openai.omit})
    assert info.value.code == "missing_api_key"


async def test_a_bearer_token_that_is_not_utf8_is_a_401_not_a_500(teams_proxy: Proxy) -> None:
    # Raw bytes on the wire: HTTP clients would re-encode the header as valid UTF-8.
    url = URL(teams_proxy.url)
    body = b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}]}'
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer abc\xff\xfe\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    reader, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), 5)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b'"invalid_api_key"' in answer


async def test_unknown_key_is_401_and_never_reaches_upstream(teams_proxy: Proxy, fake_gemini: FakeGemini) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        await teams_proxy.client(api_key="not-a-team-key").chat.completions.create(model="fast", messages=HI)
    assert info.value.code == "invalid_api_key" and "not-a-team-key" not in info.value.response.text
    assert fake_gemini.requests == []


async def test_team_key_is_let_in_and_team_id_is_logged(
    teams_proxy: Proxy, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gemini_proxy.access")
    reply = await teams_proxy.client(api_key=ALPHA_KEY).chat.completions.create(model="fast", messages=HI)
    assert reply.choices[0].message.content
    assert [r.__dict__.get("team_id") for r in caplog.records if r.name == "gemini_proxy.access"] == ["alpha"]


async def test_model_not_allowed_is_403(teams_proxy: Proxy) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        await teams_proxy.client(api_key=ALPHA_KEY).chat.completions.create(model="g3", messages=HI)
    assert info.value.code == "model_not_allowed" and "fast, pro" in info.value.message


async def test_task_not_allowed_is_403(teams_proxy: Proxy) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        await teams_proxy.client(api_key=ALPHA_KEY).chat.completions.create(
            model="fast", messages=HI, extra_headers={"x-task": "classification"}
        )
    assert info.value.code == "task_not_allowed"


async def test_spent_budget_is_429_budget_exceeded_with_reset_time(teams_proxy: Proxy) -> None:
    meter = teams_proxy.app[METER]
    meter.clock = lambda: dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.UTC)
    client = teams_proxy.client(api_key=ALPHA_KEY)
    meter.charge("alpha", 4.0)
    await client.chat.completions.create(model="fast", messages=HI)  # $4 of $5: still allowed
    meter.charge("alpha", 1.5)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="fast", messages=HI)
    assert info.value.code == "budget_exceeded"
    assert "resets at 2026-03-02T00:00:00Z" in info.value.message
    assert info.value.response.headers["retry-after"] == str(2 * 3600)
    meter.clock = lambda: dt.datetime(2026, 3, 2, 0, 0, 1, tzinfo=dt.UTC)  # a new UTC day
    await client.chat.completions.create(model="fast", messages=HI)


async def test_team_over_its_rpm_is_429(teams_proxy: Proxy) -> None:
    client = teams_proxy.client(api_key=CHINA_KEY)
    for _ in range(2):
        await client.chat.completions.create(model="cn", messages=HI)
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="cn", messages=HI)
    assert info.value.code == "rate_limit_exceeded" and "2 requests per minute" in info.value.message


async def test_region_bound_team_only_uses_its_region(
    teams_proxy: Proxy, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    # "fast" is google -> google -> gateway; for the cn team only the gateway is inside its region.
    reply = await teams_proxy.client(api_key=CHINA_KEY).chat.completions.create(model="fast", messages=HI)
    assert reply.choices[0].message.content == "Hello from the fake gateway."
    assert fake_gemini.requests == [] and len(fake_openai.requests) == 1


async def test_route_with_no_target_in_region_is_403(teams_proxy: Proxy, fake_gemini: FakeGemini) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        await teams_proxy.client(api_key=CHINA_KEY).chat.completions.create(model="pro", messages=HI)
    assert info.value.code == "region_not_allowed"
    assert "['cn']" in info.value.message and "google:gemini-2.5-pro (region global)" in info.value.message
    assert fake_gemini.requests == []


async def test_task_residency_blocks_cross_region_fallback(
    start_proxy: Any, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    extra = '[tasks.eu_summary]\nmodel = "fast"\nallowed_regions = ["global"]\n'
    proxy: Proxy = await start_proxy(config=make_config(regional(fake_gemini.url, fake_openai.url, extra)))
    # flash and flash-lite each get 1 + 2 server retries (the [retry] default): six 503s exhaust both.
    fake_gemini.push(*[error(503, "overloaded")] * 6)
    with pytest.raises(openai.InternalServerError):
        await proxy.client().chat.completions.create(model="fast", messages=HI, extra_headers={"x-task": "eu_summary"})
    assert [r["model"] for r in fake_gemini.requests] == ["gemini-2.5-flash"] * 3 + ["gemini-2.5-flash-lite"] * 3
    assert fake_openai.requests == []  # the cn fallback was never used, even as a last resort


async def test_without_teams_auth_is_off_and_said(start_proxy: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gemini_proxy")
    proxy: Proxy = await start_proxy()
    assert any("auth is off" in r.getMessage() for r in caplog.records)
    reply = await proxy.client(api_key="anything").chat.completions.create(model="fast", messages=HI)
    assert reply.choices[0].message.content


def test_team_config_refuses_literal_keys_and_bad_hashes() -> None:
    base = config_toml("http://g", "http://o/v1")
    with pytest.raises(ConfigError, match="never stored in the config"):
        make_config(base + '\n[teams.x]\nkeys = ["made-up-client-key"]\n')
    with pytest.raises(ConfigError, match="not a SHA-256 hex digest"):
        make_config(base + '\n[teams.x]\nkey_sha256 = ["abc"]\n')
    with pytest.raises(ConfigError, match="not defined in \\[tasks\\]"):
        make_config(base + f'\n[teams.x]\nkey_sha256 = ["{"0" * 64}"]\nallowed_tasks = ["nope"]\n')
    with pytest.raises(ConfigError, match="also listed by team"):
        make_config(base + f'\n[teams.x]\nkey_sha256 = ["{"0" * 64}"]\n[teams.y]\nkey_sha256 = ["{"0" * 64}"]\n')


def test_task_whose_targets_are_all_outside_its_regions_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="none of this task's targets"):
        make_config(regional("http://g", "http://o/v1", '[tasks.x]\nmodel = "pro"\nallowed_regions = ["cn"]\n'))


async def test_each_answered_request_charges_its_logged_cost_to_the_team(
    teams_proxy: Proxy, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gemini_proxy.access")
    fake_gemini.push(text_answer("one", prompt_tokens=1000, output_tokens=200))
    fake_gemini.push(text_answer("two", prompt_tokens=2000, output_tokens=400))
    client = teams_proxy.client(api_key=ALPHA_KEY)
    await client.chat.completions.create(model="fast", messages=HI)
    await client.chat.completions.create(model="fast", messages=HI)
    costs = [r.__dict__["cost_usd"] for r in caplog.records if r.name == "gemini_proxy.access"]
    # gemini-2.5-flash default prices: $0.30 in, $2.50 out per 1M tokens.
    assert costs == pytest.approx([1000 * 0.30e-6 + 200 * 2.50e-6, 2000 * 0.30e-6 + 400 * 2.50e-6])
    assert teams_proxy.app[METER].spent_today("alpha") == pytest.approx(sum(costs))


def test_call_repr_never_shows_the_key() -> None:
    call = Call(model="m", body={}, request_id="r", api_key="secret-key-value-not-real")
    assert "secret-key-value-not-real" not in repr(call)
