"""The ``[tracing]`` config section: where OpenTelemetry traces go, if anywhere.

Traces are off unless an OTLP endpoint is named, here or in the standard environment variables
(``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_ENDPOINT``): an operator who runs
no collector pays nothing for them (gemini_proxy/observe/tracing.py does not even import the
OpenTelemetry packages then). The config wins over the environment, as everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gemini_proxy.config.table import Table

# OTLP over HTTP/protobuf appends this to a base endpoint (the OTel spec for OTEL_EXPORTER_OTLP_ENDPOINT).
TRACES_PATH = "/v1/traces"


@dataclass(frozen=True, slots=True)
class TracingConfig:
    otlp_endpoint: str | None = None  # the collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318
    service_name: str | None = None  # service.name of the spans (OTEL_SERVICE_NAME, else "gemini-proxy")
    sample_ratio: float = 1.0  # share of new traces recorded; a caller's sampled flag is followed

    def endpoint(self, environ: Mapping[str, str]) -> str | None:
        """The full traces URL to export to, or None: tracing is off.

        ``OTEL_SDK_DISABLED=true`` turns it off whatever else is set (the SDK's own switch).
        """
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        if self.otlp_endpoint:
            return _traces_url(self.otlp_endpoint)
        if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]  # a signal's own URL is used as is
        if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return _traces_url(environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
        return None

    def service(self, environ: Mapping[str, str]) -> str:
        return self.service_name or environ.get("OTEL_SERVICE_NAME") or "gemini-proxy"


def _traces_url(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def parse_tracing(t: Table) -> TracingConfig:
    endpoint = t.pop("otlp_endpoint", str)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise t.error(
            "otlp_endpoint",
            f"{endpoint!r} is not an http(s) URL (traces go out as OTLP over HTTP)",
            'write the collector\'s OTLP/HTTP address, e.g. otlp_endpoint = "http://otel-collector:4318"',
        )
    ratio = t.pop("sample_ratio", float, 1.0)
    if not 0.0 <= ratio <= 1.0:
        raise t.error("sample_ratio", f"must be between 0 and 1, got {ratio!r}", "e.g. sample_ratio = 0.1 for 10%")
    cfg = TracingConfig(
        otlp_endpoint=endpoint or None, service_name=t.pop("service_name", str) or None, sample_ratio=ratio
    )
    t.done()
    return cfg
