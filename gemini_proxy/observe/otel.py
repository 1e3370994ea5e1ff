"""The OpenTelemetry side of tracing: one SERVER span per request, one CLIENT span per upstream call.

Imported only when tracing is on (observe/tracing.py), since ``opentelemetry`` is an optional
extra. Spans follow the GenAI semantic conventions (gen_ai.operation.name, gen_ai.provider.name
and the older gen_ai.system, gen_ai.request.model / gen_ai.response.model, gen_ai.usage.*,
gen_ai.response.finish_reasons) plus ``gemini_proxy.*`` attributes for what only the proxy knows
(request id, team, task, lane, attempt number, the retry decision).

    POST /v1/chat/completions      SERVER    child of the caller's traceparent, if any
      wait lane | key | rate_limit | backoff    INTERNAL, only when the request waited
      chat gemini-2.5-flash        CLIENT    attempt 1 (its traceparent goes to the upstream)
      chat gemini-2.5-flash        CLIENT    attempt 2 after a retry; a fallback is another model

Prompt and answer text never go into a span unless ``[logging]`` opts the team or task in (the
same switch as for the access log, which also caps the text at ``content_max_chars``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gemini_proxy.adapters.base import Usage
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.resilience.tracing import Labels

# W3C trace context only (traceparent, tracestate): what callers and upstreams speak.
PROPAGATOR = TraceContextTextMapPropagator()

# gen_ai.operation.name for each operation (the semantic conventions' well-known values).
OPERATION_NAMES = {
    Operation.CHAT: "chat",
    Operation.CHAT_STREAM: "chat",
    Operation.EMBED: "embeddings",
    Operation.NATIVE: "generate_content",
    Operation.NATIVE_STREAM: "generate_content",
    Operation.NATIVE_COUNT: "count_tokens",  # not a semantic-convention value: none exists for it
    Operation.RESPONSES: "chat",  # the Responses API forwarded: a chat in the conventions' terms
    Operation.RESPONSES_STREAM: "chat",
}


class OtelTracing:
    """The app's tracer provider (its own, not the global one: two apps in a process do not mix)."""

    def __init__(self, endpoint: str | None, service: str, ratio: float, exporter: SpanExporter | None) -> None:
        # A caller's sampled flag is followed; a trace that starts here is kept with ``ratio``.
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service}), sampler=ParentBased(TraceIdRatioBased(ratio))
        )
        if exporter is None:
            # Batched off the event loop: export never blocks a request.
            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("gemini_proxy")

    def start(self, headers: Mapping[str, str], method: str, route: str, labels: Labels) -> RequestSpans:
        parent = PROPAGATOR.extract(headers)
        attributes = {"http.request.method": method, "gemini_proxy.request_id": labels.request_id}
        if route:
            attributes["http.route"] = route
        span = self.tracer.start_span(
            f"{method} {route}" if route else method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return RequestSpans(self.tracer, span, labels)

    def shutdown(self) -> None:
        self.provider.shutdown()


class RequestSpans:
    """One request's trace: its SERVER span and the spans the attempt loop opens under it."""

    __slots__ = ("context", "labels", "operation", "span", "tracer")

    def __init__(self, tracer: trace.Tracer, span: Span, labels: Labels) -> None:
        self.tracer, self.span, self.labels = tracer, span, labels
        self.context = trace.set_span_in_context(span)
        self.operation: str | None = None

    def _who(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gemini_proxy.request_id": self.labels.request_id}
        if self.labels.team_id is not None:
            out["gemini_proxy.team"] = self.labels.team_id
        if self.labels.task_type is not None:
            out["gemini_proxy.task"] = self.labels.task_type
        return out

    def attempt(
        self, op: Operation, provider: str, upstream: str, model: str, number: int, fallback: bool
    ) -> AttemptSpan:
        self.operation = OPERATION_NAMES[op]
        span = self.tracer.start_span(
            f"{self.operation} {model}",
            context=self.context,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": self.operation,
                "gen_ai.provider.name": provider,
                "gen_ai.system": provider,  # the name before semantic conventions 1.37, still read by many backends
                "gen_ai.request.model": model,
                "gemini_proxy.upstream": upstream,
                "gemini_proxy.attempt": number,
                "gemini_proxy.fallback": fallback,
                **self._who(),
            },
        )
        headers: dict[str, str] = {}
        PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
        return AttemptSpan(span, headers, model)

    def waited(self, kind: str, started_ns: int, detail: Mapping[str, str | float]) -> None:
        span = self.tracer.start_span(
            f"wait {kind}",
            context=self.context,
            kind=SpanKind.INTERNAL,
            start_time=started_ns,
            attributes={"gemini_proxy.wait": kind, **detail},
        )
        span.end()

    def skipped(self, upstream: str, model: str, error_type: str, decision: str) -> None:
        self.span.add_event(
            "gemini_proxy.attempt_refused",
            {
                "gemini_proxy.upstream": upstream,
                "gen_ai.request.model": model,
                "error.type": error_type,
                "gemini_proxy.decision": decision,
            },
        )

    def finish(self, line: Mapping[str, Any]) -> None:
        span = self.span
        if not span.is_recording():
            span.end()
            return
        status = int(line.get("status_code") or 0)
        attrs: dict[str, Any] = {"http.response.status_code": status, **self._who()}
        if self.operation is not None:
            attrs["gen_ai.operation.name"] = self.operation
        for attr, key in (
            ("gen_ai.request.model", "model_requested"),
            ("gen_ai.response.model", "model_used"),
            ("gemini_proxy.upstream", "upstream"),
            ("gemini_proxy.lane", "lane"),
        ):
            if line.get(key) is not None:
                attrs[attr] = line[key]
        if line.get("model_used") is not None:
            attrs["gen_ai.usage.input_tokens"] = int(line.get("input_tokens") or 0)
            attrs["gen_ai.usage.output_tokens"] = int(line.get("output_tokens") or 0)
            attrs["gemini_proxy.usage_estimated"] = bool(line.get("usage_estimated"))
        if line.get("finish_reason"):
            attrs["gen_ai.response.finish_reasons"] = [line["finish_reason"]]
        if line.get("fallback_used"):
            attrs["gemini_proxy.fallback"] = True
        attrs["gemini_proxy.retry_count"] = int(line.get("retry_count") or 0)
        # Present only when [logging] opts this team or task in (observe/telemetry.py decides).
        if "prompt" in line:
            attrs["gen_ai.input.messages"] = line["prompt"]
        if "answer" in line:
            message = [{"role": "assistant", "parts": [{"type": "text", "content": line["answer"]}]}]
            attrs["gen_ai.output.messages"] = orjson.dumps(message).decode()
        span.set_attributes(attrs)
        if line.get("error_type"):
            span.set_attribute("error.type", line["error_type"])
            if status >= 500 or status == 0:  # HTTP server spans: a 4xx is the caller's error, not ours
                span.set_status(StatusCode.ERROR, line["error_type"])
        span.end()


class AttemptSpan:
    """One upstream call's CLIENT span; ``headers`` carry its trace context to the upstream."""

    __slots__ = ("ended", "headers", "model", "span")

    def __init__(self, span: Span, headers: dict[str, str], model: str) -> None:
        self.span, self.headers, self.model, self.ended = span, headers, model, False

    def failed(self, status: int, error_type: str, decision: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        span = self.span
        span.set_attribute("error.type", error_type)
        if status:
            span.set_attribute("http.response.status_code", status)
        if decision is not None:
            span.set_attribute("gemini_proxy.decision", decision)
        span.set_status(StatusCode.ERROR, error_type)
        span.end()

    def answered(self, usage: Usage | None, finish_reason: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        span = self.span
        span.set_attribute("gen_ai.response.model", self.model)
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if usage.estimated:
                span.set_attribute("gemini_proxy.usage_estimated", True)
        if finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        span.end()
