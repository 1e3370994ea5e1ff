"""OpenTelemetry traces, if configured: off by default, and then free.

    build(config, environ)  -> Tracing | None   None unless an OTLP endpoint is configured
                                                ([tracing] otlp_endpoint or OTEL_EXPORTER_OTLP_*)
    Tracing.start(...)      -> ServerTrace      the request's SERVER span (access-log middleware)
    ServerTrace.attempt()...                    the attempt loop's spans (resilience/tracing.py)
    ServerTrace.finish(line)                    ends the SERVER span with the access-log line's facts

Why the OpenTelemetry code sits in a module of its own (:mod:`.otel`) imported only here, only
when tracing is on: the ``opentelemetry`` packages are an optional extra (``gemini-proxy[otel]``),
and a proxy that traces nothing should neither need them nor pay their import time. With tracing
off the request path costs one ``is None`` test in the middleware and one per attempt-loop step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

from gemini_proxy.config import Config
from gemini_proxy.resilience.tracing import Labels, RequestTrace


class ServerTrace(RequestTrace, Protocol):
    def finish(self, line: Mapping[str, Any]) -> None:
        """End the SERVER span with the request's access-log line (status, models, tokens, ...)."""
        ...


class Tracing(Protocol):
    """The app's tracer (``app[TRACING]``), built once at start; ``[tracing]`` changes need a restart."""

    def start(self, headers: Mapping[str, str], method: str, route: str, labels: Labels) -> ServerTrace:
        """A request's SERVER span, the child of the caller's W3C ``traceparent`` when it sent one.
        ``route``: the endpoint's template ("" when no route matched), never the raw path."""
        ...

    def shutdown(self) -> None:
        """Export what is buffered and stop (the app's cleanup)."""
        ...


def build(config: Config, environ: Mapping[str, str] | None = None, exporter: Any = None) -> Tracing | None:
    """The app's tracing, or None when no endpoint is configured (nothing is imported then).

    ``exporter``: an OpenTelemetry ``SpanExporter`` used instead of OTLP (tests pass the SDK's
    in-memory exporter); it turns tracing on by itself.
    """
    env = os.environ if environ is None else environ
    endpoint = config.tracing.endpoint(env)
    if endpoint is None and exporter is None:
        return None
    try:
        from gemini_proxy.observe import otel
    except ImportError as exc:
        where = "[tracing] otlp_endpoint" if config.tracing.otlp_endpoint else "OTEL_EXPORTER_OTLP_ENDPOINT"
        raise ValueError(
            f"tracing is on ({where} is set) but the OpenTelemetry packages are missing ({exc.name}); "
            "install them with: pip install 'gemini-proxy[otel]' (or unset the endpoint)"
        ) from None
    return otel.OtelTracing(endpoint, config.tracing.service(env), config.tracing.sample_ratio, exporter)
