"""Key affinity: a conversation stays on one key of the pool, so Gemini's implicit cache (kept per
project, i.e. per key) pays off; resting and quarantined keys still move it, and replicas agree."""

from __future__ import annotations

from typing import Any

from bench.cache_affinity import KEYS, config_text, price, talk
from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.resilience.keys import affinity
from gemini_proxy.resilience.keys.pool import KeyPool
from gemini_proxy.resilience.keys.sources import UpstreamKey
from tests.conftest import Proxy, make_config
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import FakeGemini, error
from tests.fakes.gemini_cache import ImplicitCache

VALUES = list(KEYS.values())


def _pool(**kw: Any) -> KeyPool:
    return KeyPool.of("google", [UpstreamKey(v, f"env:{n}") for n, v in KEYS.items()], **kw)


def test_every_replica_picks_the_same_key_for_a_session() -> None:
    sessions = [affinity.session_of("team-a", {"prompt_cache_key": f"conv-{i}"}) for i in range(40)]
    one, other = _pool(), _pool()
    picks = [one.pick("gemini-2.5-flash", s).value for s in sessions]
    assert picks == [other.pick("gemini-2.5-flash", s).value for s in sessions]
    assert picks == [one.pick("gemini-2.5-flash", s).value for s in sessions]  # stable over time
    assert len(set(picks)) == 4  # sessions spread over the pool


def test_the_session_is_hashed_only_when_a_pool_of_several_keys_picks() -> None:
    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    single = KeyPool.of("google", [UpstreamKey(VALUES[0], "env:ONE")])
    lazy = affinity.Session("team-a", body)
    assert single.pick("m", lazy).value == VALUES[0]
    assert "token" not in vars(lazy)  # one key: nothing to prefer, nothing hashed
    several = _pool()
    assert several.pick("m", lazy).value == several.pick("m", affinity.session_of("team-a", body)).value
    assert vars(lazy)["token"] == affinity.session_of("team-a", body)


def test_an_out_key_moves_only_the_sessions_that_preferred_it() -> None:
    pool = _pool()
    sessions = [affinity.session_of("team-a", {"prompt_cache_key": f"conv-{i}"}) for i in range(40)]
    before = {s: pool.pick("m", s).value for s in sessions}
    out = VALUES[0]
    pool.report(out, UpstreamError(401, "API key not valid"))
    after = {s: pool.pick("m", s).value for s in sessions}
    moved = {s for s in sessions if before[s] != after[s]}
    assert moved == {s for s in sessions if before[s] == out} and moved
    assert out not in after.values()


def test_session_comes_from_prompt_cache_key_then_header_then_stable_prefix_and_is_per_team() -> None:
    turn1 = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    turn2 = {
        "messages": [*turn1["messages"], {"role": "assistant", "content": "hello"}, {"role": "user", "content": "?"}]
    }
    assert affinity.session_of("a", turn1) == affinity.session_of("a", turn2)  # later turns keep it
    assert affinity.session_of("a", turn1) != affinity.session_of("b", turn1)  # never across teams
    other_system = {"messages": [{"role": "system", "content": "be long"}, {"role": "user", "content": "hi"}]}
    assert affinity.session_of("a", other_system) != affinity.session_of("a", turn1)
    assert affinity.session_of("a", turn1, "s1") == affinity.session_of("a", turn2, "s1")
    assert affinity.session_of("a", turn1, "s1") != affinity.session_of("a", turn1, "s2")
    keyed = {**turn1, "prompt_cache_key": "k"}
    assert affinity.session_of("a", keyed, "s1") == affinity.session_of("a", {**turn2, "prompt_cache_key": "k"})
    assert affinity.session_of("a", {"input": "embed me"}) is None  # nothing to key on: round-robin


async def _twenty_turns(start_proxy: Any, fake: FakeGemini, keys: int, on: bool) -> float:
    now = [0.0]
    fake.implicit = ImplicitCache(min_tokens=1024, ttl_s=180.0, clock=lambda: now[0])
    proxy: Proxy = await start_proxy(config=make_config(config_text(fake.url, keys, on)), environ=KEYS)
    usages = await talk(proxy.client(), lambda s: now.__setitem__(0, now[0] + s), 20, gap_s=120.0)
    return price("chat", "x", usages).cached_share


async def test_twenty_turns_over_four_keys_cache_about_as_well_as_one_key(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    single = await _twenty_turns(start_proxy, fake_gemini, 1, True)
    pinned = await _twenty_turns(start_proxy, fake_gemini, 4, True)
    spread = await _twenty_turns(start_proxy, fake_gemini, 4, False)
    assert single > 0.8  # the fake caches a warm prefix at all
    assert pinned >= 0.95 * single
    assert spread < 0.4 * single  # round-robin: only turns that land on the previous turn's key


async def test_a_quarantined_key_moves_the_session_and_it_returns_after_the_probe(
    start_proxy: Any, fake_gemini: FakeGemini
) -> None:
    clock = FakeClock()
    proxy: Proxy = await start_proxy(
        config=make_config(config_text(fake_gemini.url, 4, True)), environ=KEYS, clock=clock
    )
    client = proxy.client()

    async def ask() -> str:
        await client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-session-id": "conv-7"}
        )
        return str(fake_gemini.requests[-1]["key"])

    home = await ask()
    assert {await ask() for _ in range(3)} == {home}
    fake_gemini.push(error(401, "API key not valid"))
    moved = await ask()  # the 401 quarantines home; the same request is retried on the next choice
    assert moved != home and fake_gemini.requests[-2]["key"] == home
    assert {await ask() for _ in range(3)} == {moved}  # the session stays on its second choice
    clock.advance(31.0)  # key_probe_s: the next request probes home, and it answers
    assert await ask() == home
    assert {await ask() for _ in range(3)} == {home}
