"""The session-wide secret scan (tests/secret_scan.py) sees the proxy's outputs and flags a leak.

The scan itself runs at the end of the session over everything the run produced; these tests
prove it is wired to the real outlets and that it would fail on a leak.
"""

from __future__ import annotations

import logging

import aiohttp

from gemini_proxy.observe.accesslog import LOG
from tests import secret_scan
from tests.conftest import GATEWAY_KEY, GEMINI_KEY, Proxy
from tests.fakes.gemini import error
from tests.helpers import GOOD


def test_the_key_list_holds_every_made_up_upstream_and_client_key() -> None:
    keys = secret_scan.test_keys()
    assert {GEMINI_KEY, GATEWAY_KEY, "client-key-unused", "team-alpha-client-key-not-real"} <= keys
    assert "pool-key-alpha-not-real-01" in keys


async def test_the_detector_flags_a_key_leaked_into_a_log_line_and_a_response_body(proxy: Proxy) -> None:
    private = secret_scan.Capture()
    with secret_scan.scoped(private):
        LOG.error("deliberate leak for the detector: %s", GEMINI_KEY)  # a log line
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            # A response body of the proxy: an unknown model's error echoes the model name.
            async with session.post(proxy.base_url + "/chat/completions", json={**GOOD, "model": GATEWAY_KEY}) as r:
                assert r.status == 404
            async with session.get(proxy.url + "/metrics") as r:
                assert r.status == 200
    leaks = private.leaks([GEMINI_KEY, GATEWAY_KEY])
    assert {(key, where.split(":")[0]) for key, where, _ in leaks} >= {(GEMINI_KEY, "log"), (GATEWAY_KEY, "body")}
    assert private.counts["access"] == 1 and private.counts["body"] >= 2


async def test_the_detector_ignores_a_fake_upstream_echoing_its_key_and_sees_the_proxy_redact_it(
    proxy: Proxy, fake_gemini, caplog
) -> None:
    # A real Gemini quirk: some 400 bodies quote the request URL, key and all.
    fake_gemini.push(error(400, f"API key not valid. key={GEMINI_KEY}"))
    private = secret_scan.Capture()
    with secret_scan.scoped(private), caplog.at_level(logging.INFO):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(proxy.base_url + "/chat/completions", json={**GOOD, "model": "pro"}) as r:
                assert r.status == 400
                await r.read()
    assert private.counts["body"] >= 1 and private.counts["access"] == 1
    assert private.leaks([GEMINI_KEY]) == []
