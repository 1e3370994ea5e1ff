"""The proxy's exception tree and OpenAI's error envelope: the errors a client can receive.

    ProxyError                      status  type
    ├── InvalidRequest              400     invalid_request_error
    ├── AuthenticationFailed        401     authentication_error
    ├── PermissionDenied            403     permission_error
    ├── NotFound                    404     not_found_error   (model_not_found, route 404s)
    ├── PayloadTooLarge             413     invalid_request_error
    ├── RateLimited                 429     rate_limit_error  (rate_limit_exceeded, queue_full, budget_exceeded)
    ├── InternalError               500     server_error      (a bug of ours; never a traceback)
    └── UpstreamFailed              502/503/504 upstream_error (from gemini_proxy.adapters' UpstreamError)

Every layer raises these (routing, lanes, team quotas, the handlers); one middleware turns
them into JSON (gemini_proxy/http/errors.py). An upstream's failure is not one of these until
it is final: the attempt loop classifies it first (gemini_proxy/resilience/failures.py) and
only the failure that reaches the client becomes a ProxyError.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gemini_proxy.adapters.base import RequestError


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
