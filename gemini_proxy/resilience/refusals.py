"""The proxy's own refusals: a target is not tried, by the proxy's decision, before any upstream call.

Why a type of their own: they used to be :class:`UpstreamError` with magic codes, so
:func:`~gemini_proxy.resilience.failures.classify` first had to undo that, and a log reader could
not tell Google's 429 from ours. A refusal names what refused; the attempt loop records it as an
attempt and moves on like for an upstream failure (failures.py's table says how).

    Refusal                     would-be status  code
    ├── LimitReached            429     limit_rpm / limit_tpm / limit_rpd  (our rpm/tpm/rpd of the upstream)
    ├── NoKey                   429/503 keys_exhausted / upstream_key_missing (the key pool has none to give)
    ├── CircuitOpen             503     circuit_open  (the target's breaker is open)
    └── Unsupported             501     unsupported_operation, or the translation's code (this kind or
                                        model cannot serve the request; another target may)
"""

from __future__ import annotations


class Refusal(Exception):
    """The proxy decided not to try a target (yet). ``status`` is what the client gets if it is final."""

    status = 503
    code = "refused"

    def __init__(self, message: str, *, upstream: str, code: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.upstream = upstream
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, upstream={self.upstream!r}, {self.message!r})"


class LimitReached(Refusal):
    """The upstream's rpm / tpm / rpd (its Google project's quota, as configured) would be exceeded
    for longer than the request may wait."""

    status = 429

    def __init__(self, limit: str, message: str, *, upstream: str, retry_after_s: float) -> None:
        super().__init__(message, upstream=upstream, code=f"limit_{limit}", retry_after_s=retry_after_s)
        self.limit = limit  # "rpm" | "tpm" | "rpd"


class NoKey(Refusal):
    """No key of the pool can be used: all resting after 429s (429: they come back), all
    quarantined (503 until the next probe), or none configured (503 ``upstream_key_missing``)."""

    def __init__(self, message: str, *, upstream: str, code: str, status: int, retry_after_s: float | None = None):
        super().__init__(message, upstream=upstream, code=code, retry_after_s=retry_after_s)
        self.status = status


class CircuitOpen(Refusal):
    """The target failed too often in a row: it is skipped until its cool-down ends."""

    status = 503
    code = "circuit_open"


class Unsupported(Refusal):
    """This upstream kind does not serve the operation (or this model cannot express the request)."""

    status = 501
    code = "unsupported_operation"
