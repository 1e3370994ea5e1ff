"""The Redis implementation of :class:`gemini_proxy.state.backend.StateBackend` (``[state] backend = "redis"``).

Every Redis call is bounded by ``timeout_s`` (socket and connect timeouts, plus an asyncio
timeout around the whole call, and no client-side retries), so a slow or dead Redis costs a
request at most that long. After a failure Redis is not tried again for ``retry_s`` (every call
meanwhile fails at once), then the next call probes it: recovery needs nothing from an operator.
The outage and the recovery are each logged once.

The Lua lives here and only here. ``ADMIT`` reads every counter of an admission, refuses on the
first that would go over, else increments all of them and gives each new counter its TTL: one
EVALSHA, atomic (Redis runs a script alone), so concurrent admissions from any number of
replicas never exceed a limit. Keys of one admission must hash to one slot on Redis Cluster:
put a hash tag in the prefix (``key_prefix = "{gp}:"``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gemini_proxy.config.state import StateConfig
from gemini_proxy.state.backend import Check, Refused, StateUnavailable

log = logging.getLogger("gemini_proxy.state")

# KEYS: the counters. ARGV: limit, amount, ttl_ms for each counter, in KEYS order.
# Returns {0} when every amount was taken, else {i, value of counter i} for the first refusal.
ADMIT = """
local n = #KEYS
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(ARGV[3 * i - 2])
  local amount = tonumber(ARGV[3 * i - 1])
  if (amount > 0 and cur + amount > limit) or (amount <= 0 and cur >= limit) then
    return {i, tostring(cur)}
  end
end
for i = 1, n do
  if tonumber(ARGV[3 * i - 1]) > 0 then
    redis.call('INCRBYFLOAT', KEYS[i], ARGV[3 * i - 1])
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[3 * i]) end
  end
end
return {0}
"""

# KEYS[1]: a counter. ARGV: amount, ttl_ms. A spend added after the response: no check.
ADD = """
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS[1]: a blob, KEYS[2]: the index of its owner's blobs (a sorted set scored by time).
# ARGV: value, ttl_ms, now_ms, max_count. Stores the blob with its TTL, forgets index entries
# older than the TTL, then drops the oldest blobs beyond max_count: one atomic round trip.
PUT_BLOB = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, extra - 1)
  redis.call('DEL', unpack(old))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# Test hook only: pins the wall time used for window keys, so a test cannot straddle a minute.
NOW_ENV = "GEMINI_PROXY_STATE_NOW"


class RedisState:
    def __init__(self, cfg: StateConfig, client: Redis, now: Callable[[], float] = time.time) -> None:
        self.cfg, self.client, self.now = cfg, client, now
        self.prefix = cfg.key_prefix
        self._admit = client.register_script(ADMIT)
        self._add = client.register_script(ADD)
        self._put_blob = client.register_script(PUT_BLOB)
        self._skip_until = 0.0  # monotonic; Redis is not tried before it after a failure
        self.down_since: float | None = None  # wall time of the outage's first failure
        self.failures = 0
        self.calls = 0  # round trips made: the bench reports them per admission
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def build(cls, cfg: StateConfig, environ: Mapping[str, str] | None = None) -> RedisState:
        env = os.environ if environ is None else environ
        url = env.get(cfg.url_env, "") if cfg.url_env else cfg.url
        if not url:
            raise ValueError(f"[state] url_env names {cfg.url_env}, which is not set")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"[state] url_env {cfg.url_env}: the URL must start with redis://, rediss:// or unix://")
        password = env.get(cfg.password_env) if cfg.password_env else None
        # A CA bundle only means something for TLS (rediss://); redis-py refuses it on plain TCP.
        extra: dict[str, Any] = (
            {"ssl_ca_certs": cfg.tls_ca_file} if cfg.tls_ca_file and url.startswith("rediss://") else {}
        )
        client = Redis.from_url(
            url,
            password=password,
            socket_timeout=cfg.timeout_s,
            socket_connect_timeout=cfg.timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would double the wait; the next request tries again
            health_check_interval=0,
            **extra,
        )
        pinned = env.get(NOW_ENV)
        return cls(cfg, client, (lambda: float(pinned)) if pinned else time.time)

    @property
    def rejecting(self) -> bool:
        return self.cfg.on_state_error == "reject"

    async def _run(self, call: Callable[[], Any]) -> Any:
        if time.monotonic() < self._skip_until:
            raise StateUnavailable("Redis is unreachable (retrying shortly)")
        self.calls += 1
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                result = await call()
        except Exception as exc:  # RedisError, OSError, timeouts, and anything else the client raises:
            # whatever went wrong, the configured policy (local / reject) must apply, never a 500.
            self._failed(exc)
            raise StateUnavailable(f"Redis is unreachable: {type(exc).__name__}") from exc
        if self.down_since is not None:
            log.warning(
                "shared state: Redis answers again; limits are shared again (down %.1fs)", self.now() - self.down_since
            )
            self.down_since = None
        return result

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._skip_until = time.monotonic() + self.cfg.retry_s
        if self.down_since is None:  # once per outage, not once per request
            self.down_since = self.now()
            what = (
                "requests needing it are refused with 503"
                if self.rejecting
                else f"falling back to per-replica limits (each limit / {self.cfg.replicas})"
            )
            log.error("shared state: Redis is unreachable (%s: %s); %s", type(exc).__name__, exc, what)

    async def admit(self, checks: Sequence[Check]) -> Refused | None:
        keys = [self.prefix + c.key for c in checks]
        args: list[Any] = []
        for c in checks:
            args += [repr(float(c.limit)), repr(float(c.amount)), max(1, int(c.ttl_s * 1000))]
        out = await self._run(lambda: self._admit(keys=keys, args=args))
        index = int(out[0])
        return None if index == 0 else Refused(checks[index - 1], float(out[1]))

    async def add(self, key: str, amount: float, ttl_s: float) -> None:
        args: list[Any] = [repr(float(amount)), max(1, int(ttl_s * 1000))]
        await self._run(lambda: self._add(keys=[self.prefix + key], args=args))

    async def publish(self, hash_key: str, field: str, value: str | None, ttl_s: float) -> None:
        name = self.prefix + hash_key

        async def go() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                if value is None:
                    pipe.hdel(name, field)
                else:
                    pipe.hset(name, field, value)
                    pipe.pexpire(name, max(1, int(ttl_s * 1000)))
                await pipe.execute()

        await self._run(go)

    def spawn_publish(self, hash_key: str, field: str, value: str | None, ttl_s: float) -> None:
        task = asyncio.get_running_loop().create_task(self._quiet(self.publish(hash_key, field, value, ttl_s)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn_add(self, key: str, amount: float, ttl_s: float) -> None:
        task = asyncio.get_running_loop().create_task(self._quiet(self.add(key, amount, ttl_s)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quiet(coro: Any) -> None:
        try:
            await coro
        except StateUnavailable:
            pass  # logged once by _failed; a lost health event only costs one more upstream error

    async def pull(self, hash_keys: Sequence[str]) -> dict[str, dict[str, str]]:
        async def go() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for k in hash_keys:
                    pipe.hgetall(self.prefix + k)
                return list(await pipe.execute())

        rows = await self._run(go)
        return {k: {_text(f): _text(v) for f, v in row.items()} for k, row in zip(hash_keys, rows, strict=True)}

    async def put_blob(self, key: str, index: str, value: bytes, ttl_s: float, max_count: int) -> None:
        """Store ``value`` for ``ttl_s`` and keep at most ``max_count`` blobs under ``index``."""
        ttl_ms = max(1, int(ttl_s * 1000))
        args: list[Any] = [value, ttl_ms, int(self.now() * 1000), max_count]
        await self._run(lambda: self._put_blob(keys=[self.prefix + key, self.prefix + index], args=args))

    async def get_blob(self, key: str) -> bytes | None:
        value = await self._run(lambda: self.client.get(self.prefix + key))
        return value if value is None or isinstance(value, bytes) else str(value).encode()

    async def delete_blob(self, key: str, index: str) -> bool:
        async def go() -> list[Any]:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.prefix + key)
                pipe.zrem(self.prefix + index, self.prefix + key)
                return list(await pipe.execute())

        return bool((await self._run(go))[0])

    async def get_value(self, key: str) -> bytes | None:
        value = await self._run(lambda: self.client.get(self.prefix + key))
        return value.encode() if isinstance(value, str) else value

    async def set_value(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._run(lambda: self.client.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000))))

    def status(self) -> dict[str, object]:
        return {
            "backend": "redis",
            "reachable": self.down_since is None,
            "on_state_error": self.cfg.on_state_error,
            "failures": self.failures,
        }

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.cfg.timeout_s * 2)
        await self.client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
