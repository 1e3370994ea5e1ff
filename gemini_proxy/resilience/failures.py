"""Every failed attempt, classified once: THE table of (what happened -> class -> next step -> client).

Why one table: the retry behaviour used to live in five places (classify, backoff, the breaker
accounting, the attempt loop's own sets, the README). Now :data:`RULES` lists, in the order
:func:`classify` tries them, every upstream status / reason and every refusal of the proxy's
own; :data:`TIERS` says what each class does to the attempt loop (retry, next target, stop; the
breaker; 429 pressure). :func:`gemini_proxy.resilience.backoff.decide` and the attempt loop read
:data:`TIERS`, and the README's retry-tier table is :func:`render_table` (tests/test_failures.py
compares them, so the docs cannot drift). :func:`to_client` is the error the client gets when a
failure is final.

A failure is either the upstream's (:class:`~gemini_proxy.adapters.base.UpstreamError`) or the
proxy's own (:class:`~gemini_proxy.resilience.refusals.Refusal`); both are classified here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from gemini_proxy.adapters.base import UpstreamError
from gemini_proxy.config.resilience import RetryPolicy
from gemini_proxy.errors import InvalidRequest, NotFound, ProxyError, RateLimited, UpstreamFailed
from gemini_proxy.resilience.refusals import CircuitOpen, LimitReached, NoKey, Refusal, Unsupported

Failure = UpstreamError | Refusal


class FailureClass(enum.Enum):
    """What a failed attempt means for the next step (see :data:`TIERS`)."""

    CLIENT = "client"  # the request itself is wrong: retrying or failing over cannot help
    AUTH = "auth"  # the key is bad or lacks permission: never retry on that key
    RATE_LIMIT = "rate_limit"  # per-minute quota: back off (honour retryDelay), then fall back
    QUOTA_DAY = "quota_day"  # per-day quota: will not recover in seconds; next target at once
    SERVER = "server"  # 5xx: a few short retries, then the next target
    TIMEOUT = "timeout"  # no answer in time: retry once, then the next target
    CONNECTION = "connection"  # could not connect / reset: short retry, then the next target
    LIMITED = "limited"  # the proxy's own rpm/tpm/rpd would outlast the deadline: next target at once
    NO_KEY = "no_key"  # every key of the upstream is quarantined, resting or missing: next target at once
    UNSUPPORTED = "unsupported"  # this upstream kind cannot serve the operation; another kind may
    MODEL_GONE = "model_gone"  # 404: this target's model does not exist (retired, renamed): try the next one
    CIRCUIT = "circuit_open"  # the target's circuit breaker is open: skipped


# 401/403: the key is revoked, expired or not allowed on this API. Gemini also reports a bad
# key as 400 with reason API_KEY_INVALID, which must not be read as the client's fault.
AUTH_STATUSES = frozenset({401, 403})
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "PERMISSION_DENIED"})


def _upstream(test: Callable[[UpstreamError], bool]) -> Callable[[Failure], bool]:
    return lambda f: isinstance(f, UpstreamError) and test(f)


@dataclass(frozen=True, slots=True)
class Rule:
    """One row: what happened -> its class -> what the attempt loop does -> what the client gets."""

    when: str  # as the README shows it
    match: Callable[[Failure], bool] | None  # None: handled before any attempt fails (documented only)
    cls: FailureClass | None
    then: str
    client: str  # when no other target answers


_D = RetryPolicy()  # the defaults the README quotes

RULES: tuple[Rule, ...] = (
    Rule(
        "every key of the model resting after a 429",
        None,
        None,
        "the request **waits in line** for the first key back when that fits the lane's `max_wait_s` and the "
        "deadline; otherwise as `no_key`",
        "-",
    ),
    Rule(
        "the proxy's own rpm/tpm/rpd would outlast the wait allowed (refusal `limit_rpm`/`limit_tpm`/`limit_rpd`)",
        lambda f: isinstance(f, LimitReached),
        FailureClass.LIMITED,
        "next target at once",
        "429 naming the limit",
    ),
    Rule(
        "every key of the upstream quarantined or missing, or resting longer than the wait allowed (refusal)",
        lambda f: isinstance(f, NoKey),
        FailureClass.NO_KEY,
        "next target at once",
        "429 `keys_exhausted` (keys resting) or 503 (`keys_exhausted` with `Retry-After` until the next probe "
        "/ `upstream_key_missing`)",
    ),
    Rule(
        "the upstream kind cannot serve this endpoint (e.g. embeddings on Vertex), or 501",
        lambda f: isinstance(f, Unsupported) or (isinstance(f, UpstreamError) and f.status == 501),
        FailureClass.UNSUPPORTED,
        "next target at once",
        "400 `unsupported_operation`",
    ),
    Rule(
        "the target's circuit is open (refusal)",
        lambda f: isinstance(f, CircuitOpen),
        FailureClass.CIRCUIT,
        "skipped: next target at once",
        "503 `circuit_open` with `Retry-After`",
    ),
    Rule(
        "timeout (`upstreams.X.timeout_s`)",
        _upstream(lambda e: e.timeout),
        FailureClass.TIMEOUT,
        f"logged with model and prompt size, `timeout_retries` ({_D.timeout_retries}) retry; then next target",
        "504 `upstream_timeout`",
    ),
    Rule(
        "connection refused / reset",
        _upstream(lambda e: e.connection),
        FailureClass.CONNECTION,
        f"`connection_retries` ({_D.connection_retries}) short retry; then next target",
        "502 `upstream_unreachable`",
    ),
    Rule(
        "401 / 403, or 400 `API_KEY_INVALID`",
        _upstream(lambda e: e.status in AUTH_STATUSES or e.code in AUTH_REASONS),
        FailureClass.AUTH,
        "the key is quarantined (see [key health](#upstream-keys-env-or-file-only-a-pool-per-upstream)) and the "
        "same target is tried at once on another key of the pool; with none left, next target",
        "502 `upstream_auth_failed`",
    ),
    Rule(
        "429 with a per-day `QuotaFailure`",
        _upstream(lambda e: e.status == 429 and e.quota_scope == "day"),
        FailureClass.QUOTA_DAY,
        "next target at once, never waited out; the target's circuit opens",
        "429 `upstream_quota_exhausted`",
    ),
    Rule(
        "429 per-minute",
        _upstream(lambda e: e.status == 429),
        FailureClass.RATE_LIMIT,
        f"`rate_limit_retries` ({_D.rate_limit_retries}) retries, waiting `RetryInfo.retryDelay` / "
        "`Retry-After` when given (up to `max_server_delay_s`, else next target at once), "
        "exponential + jitter otherwise; then next target. In a lane with `wait_out_rate_limits` "
        "(batch by default): retried for as long as the deadline allows, whatever the delay",
        "429 `rate_limit_exceeded` with `Retry-After`",
    ),
    Rule(
        # The client named an alias, not this model: a retired or mistyped target model is the
        # config's problem, and its fallbacks are what the config says to use instead.
        "404 (the target's model is unknown: retired or mistyped)",
        _upstream(lambda e: e.status == 404),
        FailureClass.MODEL_GONE,
        "not retried; next target (the client named an alias, not this model)",
        "404 `model_not_found`",
    ),
    Rule(
        "400 / 409 / 413 / 422 (any other 4xx)",
        _upstream(lambda e: 400 <= e.status < 500),
        FailureClass.CLIENT,
        "no retry, no fallback: no other model or key will accept it",
        "OpenAI-shaped 4xx",
    ),
    Rule(
        "500 / 502 / 503 / 504",
        lambda f: True,
        FailureClass.SERVER,
        f"`server_retries` ({_D.server_retries}) short retries, exponential + jitter; then next target",
        "502 (503 for a 503) `upstream_error`",
    ),
)


def classify(err: Failure) -> FailureClass:
    """The class of the first rule of :data:`RULES` that matches."""
    for rule in RULES:
        if rule.match is not None and rule.cls is not None and rule.match(err):
            return rule.cls
    raise AssertionError("the last rule matches everything")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Tier:
    """What one failure class does to the attempt loop."""

    action: Literal["stop", "next", "retry"]  # "retry": up to ``retries`` times, then next target
    why: str = ""  # logged with a stop / next-at-once decision
    retries: str | None = None  # the RetryPolicy field that bounds retries on the same target
    breaker: Literal["fail", "trip", "success"] | None = None  # what it does to the target's circuit
    pressure: bool = False  # quota pressure: the alias's degrade_to may answer
    slows_lane: bool = False  # the upstream pushed back: the lane's concurrency halves


TIERS: Mapping[FailureClass, Tier] = MappingProxyType(
    {
        FailureClass.CLIENT: Tier(
            "stop", "the request itself was rejected: no other model or key will accept it", breaker="success"
        ),
        # With another usable key in the pool, the attempt loop retries at once on it (backoff.decide).
        FailureClass.AUTH: Tier("next", "the upstream rejected the key and no other key of the pool is usable"),
        FailureClass.QUOTA_DAY: Tier(
            "next",
            "per-day quota exhausted: it will not recover in seconds",
            breaker="trip",
            pressure=True,
            slows_lane=True,
        ),
        FailureClass.LIMITED: Tier(
            "next", "the proxy's own rate limit for this upstream would outlast the deadline", pressure=True
        ),
        FailureClass.MODEL_GONE: Tier("next", "the upstream does not know this model: its fallbacks may"),
        FailureClass.UNSUPPORTED: Tier("next", "this upstream kind does not serve the operation"),
        FailureClass.NO_KEY: Tier("next", "no usable key for this upstream (quarantined, resting or missing)"),
        FailureClass.CIRCUIT: Tier("next", "circuit open, target skipped"),
        # A per-minute 429 is not a broken target: the key rests for exactly the upstream's
        # retryDelay (resilience/keys/pool.py) and requests wait for it; opening the circuit on a
        # burst of 429s would refuse the target whatever Google said (and fail waiting batch work).
        FailureClass.RATE_LIMIT: Tier("retry", retries="rate_limit_retries", pressure=True, slows_lane=True),
        FailureClass.SERVER: Tier("retry", retries="server_retries", breaker="fail"),
        FailureClass.TIMEOUT: Tier("retry", retries="timeout_retries", breaker="fail"),
        FailureClass.CONNECTION: Tier("retry", retries="connection_retries", breaker="fail"),
    }
)


def render_table() -> str:
    """The README's retry-tier table, from :data:`RULES`."""
    lines = [
        "| what happened | class | what the proxy does next | the client gets (when no other target answers) |",
        "|---|---|---|---|",
    ]
    for rule in RULES:
        cls = f"`{rule.cls.value}`" if rule.cls else "-"
        lines.append(f"| {rule.when} | {cls} | {rule.then} | {rule.client} |")
    return "\n".join(lines) + "\n"


def to_client(err: Failure) -> ProxyError:
    """The error the client sees when a failure is final. Never carries a key."""
    cls = classify(err)
    where = f"upstream {err.upstream}" if err.upstream else "upstream"
    headers: dict[str, str] = {}
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after_s)))
    if isinstance(err, Refusal):
        return _refusal_to_client(err, cls, headers)
    if cls is FailureClass.AUTH:  # an operator must fix or rotate the key: a client retry cannot
        return UpstreamFailed(
            f"{where} rejected the proxy's credentials", code="upstream_auth_failed", should_retry=False
        )
    if cls is FailureClass.UNSUPPORTED:
        return InvalidRequest(err.message, code=err.code or "unsupported_operation")
    if cls is FailureClass.QUOTA_DAY:  # the day's quota is gone: retrying in seconds only adds load
        message = f"{where} is rate limited: {err.message}"
        return RateLimited(message, code="upstream_quota_exhausted", headers=headers, should_retry=False)
    if cls is FailureClass.RATE_LIMIT:
        return RateLimited(f"{where} is rate limited: {err.message}", code="rate_limit_exceeded", headers=headers)
    if cls is FailureClass.MODEL_GONE:
        return NotFound(f"{where}: {err.message}", code="model_not_found")
    if cls is FailureClass.CLIENT:
        if err.code == "content_filter":
            return InvalidRequest(err.message, code="content_filter")
        return InvalidRequest(
            f"{where} rejected the request: {err.message}",
            code=err.code or "invalid_request",
            status=err.status if err.status in (400, 413, 422) else 400,
        )
    if cls is FailureClass.TIMEOUT:
        return UpstreamFailed(f"{where} did not answer in time", code="upstream_timeout", status=504)
    if cls is FailureClass.CONNECTION:
        if err.mid_stream:  # it answered, then the connection broke: not the same as never reaching it
            return UpstreamFailed(f"{where} dropped the stream mid-way", code="upstream_unreachable", status=502)
        return UpstreamFailed(f"{where} is unreachable", code="upstream_unreachable", status=502)
    status = 503 if err.status == 503 else 502
    code = err.code if err.code == "malformed_function_call" else "upstream_error"
    return UpstreamFailed(f"{where} failed: {err.message}", code=code, status=status, headers=headers)


def _refusal_to_client(err: Refusal, cls: FailureClass, headers: dict[str, str]) -> ProxyError:
    if cls is FailureClass.LIMITED:  # the message names the limit (rpm/tpm/rpd of upstream X)
        return RateLimited(err.message, code="rate_limit_exceeded", headers=headers)
    if cls is FailureClass.UNSUPPORTED:  # no target of the route can serve this endpoint
        return InvalidRequest(err.message, code=err.code)
    if cls is FailureClass.NO_KEY:  # resting keys recover (429 + Retry-After); quarantined ones need an operator
        if err.status == 429:
            return RateLimited(err.message, code=err.code, headers=headers)
        missing = err.code == "upstream_key_missing"  # until an operator sets the key
        return UpstreamFailed(
            err.message, code=err.code, status=503, headers=headers, should_retry=False if missing else None
        )
    where = f"upstream {err.upstream}" if err.upstream else "upstream"
    return UpstreamFailed(f"{where} failed: {err.message}", code=err.code, status=503, headers=headers)


def with_chain(final: ProxyError, failures: list[tuple[str, ProxyError]], route: str) -> ProxyError:
    """The final error, its message naming every target's failure in the order they were tried
    (primary first): the cause is often the primary's (a missing key), not the last fallback's."""
    if len(failures) < 2:
        return final
    steps = "; ".join(f"({n}) {target}: {err.message}" for n, (target, err) in enumerate(failures, 1))
    final.message = f"every target of {route!r} failed: {steps}"
    return final
