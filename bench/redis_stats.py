"""Redis round trips and Redis CPU per proxied request, from ``INFO commandstats`` / ``INFO cpu``.

Read before and after a case (the whole load-generator run, warm-up included) and divided by every
request the generator finished in that run, so the quotient is exact when nothing else uses the
Redis: the proxy makes one ``EVALSHA`` per admission (gemini_proxy/state/redis.py's ``ADMIT`` script) and
nothing else per request. The counters are server-wide, so another user of the same Redis (a
parallel test run) can only raise the figures: they are upper bounds.
"""

from __future__ import annotations

from typing import Any

# The commands the proxy sends: EVALSHA per admission (EVAL once if the script cache was flushed),
# and in the background HSET/HDEL(+PEXPIRE) for key health and an HGETALL pull every [state] sync_s.
# Redis also counts the commands a script runs (GET, INCRBYFLOAT, PTTL, PEXPIRE inside ADMIT):
# those are no round trips, so only these names are.
ADMISSION_COMMANDS = ("evalsha", "eval")
BACKGROUND_COMMANDS = ("hgetall", "hset", "hdel")


def snapshot(client: Any) -> dict[str, float]:
    """Command counts (``calls`` per command name) and the server's CPU seconds, now."""
    return parse(client.info("commandstats"), client.info("cpu"))


def parse(commandstats: dict[str, Any], cpu: dict[str, Any]) -> dict[str, float]:
    """Flatten what redis-py returns for ``INFO commandstats`` and ``INFO cpu`` into one mapping."""
    out: dict[str, float] = {}
    for name, stats in commandstats.items():
        if name.startswith("cmdstat_") and isinstance(stats, dict):
            out[name.removeprefix("cmdstat_")] = float(stats.get("calls", 0))
    out["_cpu_s"] = float(cpu.get("used_cpu_user", 0.0)) + float(cpu.get("used_cpu_sys", 0.0))
    return out


def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, Any]:
    """Admission round trips, all commands and Redis CPU ms, each per request, between two snapshots."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    counts = {k: int(v) for k, v in sorted(delta.items()) if v and not k.startswith("_")}
    if requests <= 0:
        return {
            "redis_evalsha_per_req": None,
            "redis_background_per_req": None,
            "redis_cpu_ms_per_req": None,
            "redis_commands": counts,
        }
    return {
        "redis_evalsha_per_req": sum(delta.get(k, 0.0) for k in ADMISSION_COMMANDS) / requests,
        "redis_background_per_req": sum(delta.get(k, 0.0) for k in BACKGROUND_COMMANDS) / requests,
        "redis_cpu_ms_per_req": delta["_cpu_s"] * 1000.0 / requests,
        "redis_commands": counts,  # every command the server ran in the case, by name
    }
