"""What key affinity saves: one 20-turn conversation over a 4-key pool, priced from [pricing].

    python -m bench.cache_affinity          # prints a table, writes bench/results/cache_affinity.json

The upstream is the test fake Gemini with per-key implicit caching (tests/fakes/gemini_cache.py):
a request is billed at the cached rate for the longest prefix the *same key* sent within the
cache's lifetime. The conversation has a ~2,000-token system prompt and ~100-token user turns;
between two turns other traffic (0-3 unrelated requests, seeded) goes through the same pool, as
it does in production, so round-robin does not simply cycle through the keys in order.

Two regimes, because the answer depends on how the turn gap compares to the cache's lifetime:

- ``chat``: a person typing, 120 s between turns, implicit cache warm for 180 s: only the key
  that served the previous turn still holds the prefix.
- ``agent``: a tool loop, 5 s between turns, cache warm for 300 s: every key that served any
  earlier turn still holds a (shorter) prefix.

Each regime runs three pools: a single key (the best case), four keys with affinity (the
default), four keys round-robin (``key_affinity = false``). Money is the conversation's cost
with its cached tokens at the cached rate, against the same tokens all billed fresh.
"""

from __future__ import annotations

import asyncio
import random
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
from aiohttp.test_utils import TestServer

from gemini_proxy.adapters.base import Usage
from gemini_proxy.config import parse
from gemini_proxy.config.pricing import DEFAULT_PRICES
from gemini_proxy.http.app import make_app
from tests.fakes.gemini import FakeGemini
from tests.fakes.gemini_cache import ImplicitCache

MODEL = "gemini-2.5-flash"
KEYS = {f"AFFINITY_KEY_{i}": f"affinity-bench-key-not-real-{i:02d}" for i in range(4)}
SYSTEM = " ".join(f"Rule {i}: answer politely, cite the handbook section {i} when it applies." for i in range(110))
REGIMES = {"chat": (120.0, 180.0), "agent": (5.0, 300.0)}  # (seconds between turns, cache lifetime)


@dataclass
class Result:
    regime: str
    pool: str
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    cached_share: float
    cost_usd: float
    cost_uncached_usd: float
    saved_usd: float


def config_text(url: str, keys: int, affinity: bool) -> str:
    names = ", ".join(f'"{n}"' for n in list(KEYS)[:keys])
    return f"""
[upstreams.google]
kind = "gemini"
base_url = "{url}"
api_keys_env = [{names}]
key_affinity = {"true" if affinity else "false"}

[models.fast]
target = "google:{MODEL}"
"""


async def talk(
    client: openai.AsyncOpenAI, advance: Callable[[float], None], turns: int, gap_s: float, seed: int = 7
) -> list[Usage]:
    """One conversation of ``turns`` turns, with unrelated traffic in between; its usages."""
    rng = random.Random(seed)
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    out: list[Usage] = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Turn {turn}: " + "please check the order status. " * 12})
        done = await client.chat.completions.create(model="fast", messages=messages)  # type: ignore[arg-type]
        usage = done.usage
        assert usage is not None
        details = usage.prompt_tokens_details
        out.append(Usage(usage.prompt_tokens, usage.completion_tokens, (details.cached_tokens or 0) if details else 0))
        messages.append({"role": "assistant", "content": done.choices[0].message.content or ""})
        for other in range(rng.randint(0, 3)):
            await client.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": f"unrelated {turn}.{other}"}]
            )
        advance(gap_s)
    return out


def price(regime: str, pool: str, usages: list[Usage]) -> Result:
    p = DEFAULT_PRICES[MODEL]
    prompt = sum(u.input_tokens for u in usages)
    cached = sum(u.cached_tokens for u in usages)
    output = sum(u.output_tokens for u in usages)
    cost = sum(p.cost(u) for u in usages)
    fresh = sum(p.cost(Usage(u.input_tokens, u.output_tokens)) for u in usages)
    return Result(
        regime,
        pool,
        prompt,
        cached,
        output,
        round(cached / prompt, 3),
        round(cost, 6),
        round(fresh, 6),
        round(fresh - cost, 6),
    )


async def run_one(regime: str, pool: str, turns: int = 20) -> Result:
    gap_s, ttl_s = REGIMES[regime]
    now = [0.0]
    fake = FakeGemini()
    fake.implicit = ImplicitCache(min_tokens=1024, ttl_s=ttl_s, clock=lambda: now[0])
    upstream = TestServer(fake.app(), host="127.0.0.1")
    await upstream.start_server()
    keys, affinity = {"single": (1, True), "affinity": (4, True), "round-robin": (4, False)}[pool]
    cfg = parse(tomllib.loads(config_text(str(upstream.make_url("")).rstrip("/"), keys, affinity)), "bench.toml")
    proxy = TestServer(make_app(cfg, environ=KEYS), host="127.0.0.1")
    await proxy.start_server()
    client = openai.AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key="unused", max_retries=0)
    try:
        usages = await talk(client, lambda s: now.__setitem__(0, now[0] + s), turns, gap_s)
    finally:
        await client.close()
        await proxy.close()
        await upstream.close()
    return price(regime, pool, usages)


async def main() -> None:
    results = [await run_one(regime, pool) for regime in REGIMES for pool in ("single", "affinity", "round-robin")]
    print("| regime | pool | prompt tok | cached tok | cached share | cost USD | uncached USD | saved USD |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.regime} | {r.pool} | {r.prompt_tokens} | {r.cached_tokens} | {r.cached_share:.1%} "
            f"| {r.cost_usd:.6f} | {r.cost_uncached_usd:.6f} | {r.saved_usd:.6f} |"
        )
    out = Path(__file__).parent / "results" / "cache_affinity.json"
    out.write_bytes(orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2))
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
