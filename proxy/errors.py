"""The proxy's exception tree, the one failure classifier, and OpenAI's error envelope.

    ProxyError                      status  type
    ├── InvalidRequest              400     invalid_request_error
    ├── AuthenticationFailed        401     authentication_error
    ├── PermissionDenied            403     permission_error
    ├── NotFound                    404     not_found_error   (model_not_found, route 404s)
    ├── PayloadTooLarge             413     invalid_request_error
    ├── RateLimited                 429     rate_limit_error  (rate_limit_exceeded, queue_full, budget_exceeded)
    ├── InternalError               500     server_error      (a bug of ours; never a traceback)
    └── UpstreamFailed              502/503/504 upstream_error (from adapters' UpstreamError)

Every handler raises these; one middleware turns them into JSON. Every retry / rotate /
fall-back decision comes from :func:`classify`, so the tiers live in one table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import orjson

from adapters.base import RequestError, UpstreamError


class ProxyError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.headers = dict(headers or {})
        # The OpenAI SDKs (and LangChain through them) obey `x-should-retry` over their own status
        # rules: False where a client retry cannot help (it would only bill more model calls),
        # True where waiting does (a Retry-After says how long); None leaves the SDK's default.
        if should_retry is None and "Retry-After" in self.headers:
            should_retry = True
        self.should_retry = should_retry

    def body(self) -> bytes:
        return envelope(self.message, self.type, self.code, self.param)

    def response_headers(self) -> dict[str, str]:
        if self.should_retry is None:
            return self.headers
        return {**self.headers, "x-should-retry": "true" if self.should_retry else "false"}


class InvalidRequest(ProxyError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(ProxyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ProxyError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(ProxyError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class PayloadTooLarge(ProxyError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(ProxyError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class InternalError(ProxyError):
    status = 500
    type = "server_error"
    code = "internal_error"


class UpstreamFailed(ProxyError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


def envelope(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    """OpenAI's error body, exactly: {"error": {"message", "type", "param", "code"}}."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def from_request_error(exc: RequestError) -> InvalidRequest:
    return InvalidRequest(exc.message, code=exc.code, param=exc.param)


# --- classification -------------------------------------------------------------------------


class FailureClass(enum.Enum):
    """What an upstream failure means for the next step. See the README's error table."""

    CLIENT = "client"  # the request itself is wrong: retrying or failing over cannot help
    AUTH = "auth"  # the key is bad or lacks permission: never retry on that key
    RATE_LIMIT = "rate_limit"  # per-minute quota: back off (honour retryDelay), then fall back
    QUOTA_DAY = "quota_day"  # per-day quota: will not recover in seconds; next target at once
    SERVER = "server"  # 5xx: a few short retries, then the next target
    TIMEOUT = "timeout"  # no answer in time: retry once, then the next target
    CONNECTION = "connection"  # could not connect / reset: short retry, then the next target
    LIMITED = "limited"  # the proxy's own rpm/tpm/rpd would outlast the deadline: next target at once
    NO_KEY = "no_key"  # every key of the upstream is quarantined, resting or missing: next target at once
    UNSUPPORTED = "unsupported"  # 501: this upstream kind cannot serve the operation; another kind may
    MODEL_GONE = "model_gone"  # 404: this target's model does not exist (retired, renamed): try the next one


# Codes of UpstreamErrors the proxy raises itself, before any upstream call (proxy/limits.py,
# the circuit breaker): they must never be read as the upstream's verdict.
LIMIT_CODES = frozenset({"limit_rpm", "limit_tpm", "limit_rpd"})
# Raised by the key pool (proxy/keys.py) when it has nothing to hand out.
NO_KEY_CODES = frozenset({"keys_exhausted", "upstream_key_missing"})
CIRCUIT_OPEN = "circuit_open"


# Status codes that mean "this request is wrong": no other model or key will accept it.
CLIENT_STATUSES = frozenset({400, 404, 409, 413, 422})
# 401/403: the key is revoked, expired or not allowed on this API. Gemini also reports a bad
# key as 400 with reason API_KEY_INVALID, which must not be read as the client's fault.
AUTH_STATUSES = frozenset({401, 403})
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "PERMISSION_DENIED"})


def classify(err: UpstreamError) -> FailureClass:
    if err.code in LIMIT_CODES:
        return FailureClass.LIMITED
    if err.code in NO_KEY_CODES:
        return FailureClass.NO_KEY
    if err.status == 501:
        return FailureClass.UNSUPPORTED
    if err.timeout:
        return FailureClass.TIMEOUT
    if err.connection:
        return FailureClass.CONNECTION
    if err.status in AUTH_STATUSES or (err.code in AUTH_REASONS):
        return FailureClass.AUTH
    if err.status == 429:
        return FailureClass.QUOTA_DAY if err.quota_scope == "day" else FailureClass.RATE_LIMIT
    if err.status == 404:
        # The client named an alias, not this model: a retired or mistyped target model is the
        # config's problem, and its fallbacks are what the config says to use instead.
        return FailureClass.MODEL_GONE
    if err.status in CLIENT_STATUSES or 400 <= err.status < 500:
        return FailureClass.CLIENT
    return FailureClass.SERVER


def to_client(err: UpstreamError) -> ProxyError:
    """The error the client sees when an upstream failure is final. Never carries a key."""
    cls = classify(err)
    where = f"upstream {err.upstream}" if err.upstream else "upstream"
    headers: dict[str, str] = {}
    if err.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(err.retry_after_s)))
    if cls is FailureClass.AUTH:  # an operator must fix or rotate the key: a client retry cannot
        return UpstreamFailed(
            f"{where} rejected the proxy's credentials", code="upstream_auth_failed", should_retry=False
        )
    if cls is FailureClass.LIMITED:  # the message names the limit (rpm/tpm/rpd of upstream X)
        return RateLimited(err.message, code="rate_limit_exceeded", headers=headers)
    if cls is FailureClass.UNSUPPORTED:  # no target of the route can serve this endpoint
        return InvalidRequest(err.message, code=err.code or "unsupported_operation")
    if cls is FailureClass.NO_KEY:  # resting keys recover (429 + Retry-After); quarantined ones need an operator
        if err.status == 429:
            return RateLimited(err.message, code=err.code, headers=headers)
        missing = err.code == "upstream_key_missing"  # until an operator sets the key
        return UpstreamFailed(
            err.message, code=err.code, status=503, headers=headers, should_retry=False if missing else None
        )
    if cls in (FailureClass.RATE_LIMIT, FailureClass.QUOTA_DAY):
        if cls is FailureClass.QUOTA_DAY:  # the day's quota is gone: retrying in seconds only adds load
            return RateLimited(
                f"{where} is rate limited: {err.message}",
                code="upstream_quota_exhausted",
                headers=headers,
                should_retry=False,
            )
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
    code = err.code if err.code in ("malformed_function_call", CIRCUIT_OPEN) else "upstream_error"
    return UpstreamFailed(f"{where} failed: {err.message}", code=code, status=status, headers=headers)


def with_chain(final: ProxyError, failures: list[tuple[str, ProxyError]], route: str) -> ProxyError:
    """The final error, its message naming every target's failure in the order they were tried
    (primary first): the cause is often the primary's (a missing key), not the last fallback's."""
    if len(failures) < 2:
        return final
    steps = "; ".join(f"({n}) {target}: {err.message}" for n, (target, err) in enumerate(failures, 1))
    final.message = f"every target of {route!r} failed: {steps}"
    return final


def stream_error_event(exc: ProxyError) -> bytes:
    """An error after the stream started: OpenAI SDKs raise on a data event holding `error`."""
    return b"data: " + exc.body() + b"\n\n"


def describe(exc: BaseException) -> dict[str, Any]:
    """Fields for the request log."""
    if isinstance(exc, ProxyError):
        return {"error_type": exc.code or exc.type, "status_code": exc.status}
    return {"error_type": "internal_error", "status_code": 500}
