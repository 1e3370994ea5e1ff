"""OpenTelemetry traces, end to end: the real OpenAI SDK -> proxy -> the fake Gemini, spans caught
by the SDK's in-memory exporter (and, once, by an OTLP/HTTP receiver on loopback).

What an operator relies on: one SERVER span per request with a CLIENT span per upstream attempt
under it, the caller's ``traceparent`` continued and handed on to the upstream, retries and
fallbacks as spans of their own, GenAI attributes (models, tokens, finish reasons), no prompt or
answer text unless the task opts in, and nothing at all when tracing is off.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import gemini_proxy.observe
from gemini_proxy.adapters.interface import Operation
from gemini_proxy.adapters.simulated import split_stream
from gemini_proxy.config import ConfigError
from gemini_proxy.config.tracing import TracingConfig
from gemini_proxy.http.app import make_app
from gemini_proxy.http.appkeys import TRACING
from gemini_proxy.observe.otel import OPERATION_NAMES
from gemini_proxy.routing.teams import hash_client_key
from tests.conftest import ENV, Proxy, config_toml, eventually, make_config
from tests.fakes.clock import FakeClock
from tests.fakes.gemini import CutStream, FakeGemini, HeldStream, error, text_answer
from tests.fakes.openai import FakeOpenAI
from tests.helpers import post
from tests.test_cli import _check

SECRET_PROMPT = "my passport number is X1234567"
SECRET_ANSWER = "your passport is noted"
# A caller's W3C trace context (the trace id and span id are made up).
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
async def traced(aiohttp_server: Callable[..., Any], fake_gemini: FakeGemini, fake_openai: FakeOpenAI):
    """Factory: ``await traced(extra_toml)`` -> (Proxy, exporter): the proxy with tracing on."""
    proxies: list[Proxy] = []

    async def start(extra: str = "", *, clock: Any = None) -> tuple[Proxy, InMemorySpanExporter]:
        exporter = InMemorySpanExporter()
        cfg = make_config(config_toml(fake_gemini.url, fake_openai.url, extra))
        app = make_app(cfg, environ=ENV, clock=clock, span_exporter=exporter)
        server = await aiohttp_server(app)
        proxies.append(Proxy(app=app, url=str(server.make_url("")).rstrip("/")))
        return proxies[-1], exporter

    yield start
    for proxy in proxies:
        for client in proxy.clients:
            await client.close()


def by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


async def server_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The request's SERVER span: it ends with the access-log line, a moment after the response."""
    assert await eventually(lambda: len(by_kind(exporter, SpanKind.SERVER)) == 1)
    return by_kind(exporter, SpanKind.SERVER)[0]


def ask(proxy: Proxy, model: str = "pro", text: str = "Hi", **kw: Any) -> Any:
    return proxy.client().chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **kw)


async def test_a_request_is_one_server_span_with_the_upstream_call_as_its_client_child(
    traced: Any, fake_gemini: FakeGemini
) -> None:
    proxy, exporter = await traced()
    fake_gemini.push(text_answer("hello", prompt_tokens=12, output_tokens=3))
    answer = await ask(proxy, "pro", extra_headers={"x-request-id": "req-traced-1"})
    server = await server_span(exporter)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert client.context.trace_id == server.context.trace_id
    assert server.name == "POST /v1/chat/completions"
    assert client.name == "chat gemini-2.5-pro"
    assert client.attributes is not None and server.attributes is not None
    assert client.attributes["gen_ai.operation.name"] == "chat"
    assert client.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert client.attributes["gen_ai.system"] == "gcp.gemini"
    assert client.attributes["gen_ai.request.model"] == "gemini-2.5-pro"
    assert client.attributes["gen_ai.response.model"] == "gemini-2.5-pro"
    assert client.attributes["gemini_proxy.request_id"] == "req-traced-1"
    assert server.attributes["gemini_proxy.request_id"] == "req-traced-1"
    assert server.attributes["gen_ai.request.model"] == "pro"  # the alias the client named
    assert server.attributes["gen_ai.response.model"] == "gemini-2.5-pro"
    assert server.attributes["http.response.status_code"] == 200
    assert answer.choices[0].message.content == "hello"


async def test_tokens_and_finish_reasons_are_span_attributes(traced: Any, fake_gemini: FakeGemini) -> None:
    proxy, exporter = await traced()
    fake_gemini.push(text_answer("cut short", finish="MAX_TOKENS", prompt_tokens=21, output_tokens=7))
    answer = await ask(proxy, "pro")
    server = await server_span(exporter)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert answer.usage is not None and answer.choices[0].finish_reason == "length"
    for span in (client, server):
        assert span.attributes is not None
        assert span.attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens == 21
        assert span.attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens == 7
        assert span.attributes["gen_ai.response.finish_reasons"] == ("length",)


async def test_the_callers_traceparent_is_continued_and_handed_to_the_upstream(
    traced: Any, fake_gemini: FakeGemini
) -> None:
    proxy, exporter = await traced()
    await ask(proxy, "pro", extra_headers={"traceparent": TRACEPARENT})
    server = await server_span(exporter)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == CALLER_SPAN
    sent = fake_gemini.requests[0]["headers"]["traceparent"]
    version, trace_id, parent_id, flags = sent.split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent_id == format(client.context.span_id, "016x")  # the upstream's parent is the attempt


async def test_a_retry_is_two_client_spans_and_a_backoff_wait(traced: Any, fake_gemini: FakeGemini) -> None:
    proxy, exporter = await traced(clock=FakeClock())
    fake_gemini.push(error(503, "The model is overloaded."), text_answer("second time"))
    answer = await ask(proxy, "pro")
    server = await server_span(exporter)
    first, second = sorted(by_kind(exporter, SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert answer.choices[0].message.content == "second time"
    assert first.attributes is not None and second.attributes is not None
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["http.response.status_code"] == 503
    assert str(first.attributes["gemini_proxy.decision"]).startswith("retry")
    assert (first.attributes["gemini_proxy.attempt"], second.attributes["gemini_proxy.attempt"]) == (1, 2)
    assert second.status.status_code is not StatusCode.ERROR
    # Each attempt is the parent of its own upstream request.
    parents = [r["headers"]["traceparent"].split("-")[2] for r in fake_gemini.requests]
    assert parents == [format(s.context.span_id, "016x") for s in (first, second)]
    waits = [s for s in exporter.get_finished_spans() if s.name == "wait backoff"]
    assert len(waits) == 1 and waits[0].parent is not None and waits[0].parent.span_id == server.context.span_id
    assert server.attributes is not None and server.attributes["gemini_proxy.retry_count"] == 1


async def test_a_fallback_is_a_client_span_of_the_next_model(traced: Any, fake_gemini: FakeGemini) -> None:
    proxy, exporter = await traced(clock=FakeClock())
    fake_gemini.push(error(404, "models/gemini-2.5-flash is not found"), text_answer("from the fallback"))
    await ask(proxy, "fast")
    server = await server_span(exporter)
    spans = sorted(by_kind(exporter, SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    assert [s.attributes and s.attributes["gen_ai.request.model"] for s in spans] == [
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
    ]
    assert [s.attributes and s.attributes["gemini_proxy.fallback"] for s in spans] == [False, True]
    assert server.attributes is not None and server.attributes["gen_ai.response.model"] == "gemini-2.5-flash-lite"
    assert server.attributes["gemini_proxy.fallback"] is True


async def test_spans_name_the_team_and_the_task(traced: Any, fake_gemini: FakeGemini) -> None:
    team_key = "team-search-client-key-not-real"
    proxy, exporter = await traced(f'\n[teams.search]\nkey_sha256 = ["{hash_client_key(team_key)}"]\n')
    await proxy.client(api_key=team_key).chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Hi"}], extra_headers={"x-task": "summary"}
    )
    server = await server_span(exporter)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    for span in (server, client):
        assert span.attributes is not None
        assert (span.attributes["gemini_proxy.team"], span.attributes["gemini_proxy.task"]) == ("search", "summary")


def span_text(exporter: InMemorySpanExporter) -> str:
    """Every attribute and event of every span, as one text to search."""
    parts = []
    for span in exporter.get_finished_spans():
        parts.append(orjson.dumps(dict(span.attributes or {}), default=list).decode())
        for event in span.events:
            parts.append(orjson.dumps(dict(event.attributes or {}), default=list).decode())
    return "\n".join(parts)


async def test_no_prompt_or_answer_text_in_spans_by_default(traced: Any, fake_gemini: FakeGemini) -> None:
    proxy, exporter = await traced()
    fake_gemini.push(text_answer(SECRET_ANSWER))
    await ask(proxy, "summary", text=SECRET_PROMPT)
    server = await server_span(exporter)
    text = span_text(exporter)
    assert "passport" not in text
    assert server.attributes is not None and "gen_ai.input.messages" not in server.attributes


async def test_a_task_opted_in_to_content_logging_has_its_text_in_the_server_span(
    traced: Any, fake_gemini: FakeGemini
) -> None:
    proxy, exporter = await traced('\n[logging]\nlog_content_tasks = ["summary"]\n')
    fake_gemini.push(text_answer(SECRET_ANSWER))
    await ask(proxy, "summary", text=SECRET_PROMPT)
    server = await server_span(exporter)
    assert server.attributes is not None
    assert server.attributes["gemini_proxy.task"] == "summary"
    assert SECRET_PROMPT in str(server.attributes["gen_ai.input.messages"])
    assert SECRET_ANSWER in str(server.attributes["gen_ai.output.messages"])
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert client.attributes is not None and "passport" not in orjson.dumps(dict(client.attributes)).decode()


async def test_a_streams_spans_end_when_the_stream_ends(traced: Any, fake_gemini: FakeGemini) -> None:
    proxy, exporter = await traced()
    release = asyncio.Event()
    events = split_stream(text_answer("alpha beta gamma delta", prompt_tokens=9, output_tokens=4).body)
    fake_gemini.push(HeldStream(events, release, after=1))
    stream = await ask(proxy, "pro", stream=True, stream_options={"include_usage": True})
    await asyncio.wait_for(stream.__anext__(), 10)
    assert [s.name for s in exporter.get_finished_spans()] == []  # the first chunk is out, the call is not over
    release.set()
    chunks = [c async for c in stream]
    server = await server_span(exporter)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert client.end_time is not None and server.end_time is not None and client.end_time <= server.end_time
    assert client.attributes is not None
    assert client.attributes["gen_ai.usage.output_tokens"] == chunks[-1].usage.completion_tokens == 4
    assert client.attributes["gen_ai.response.finish_reasons"] == ("stop",)


async def test_a_stream_cut_by_the_upstream_after_its_first_chunk_fails_its_client_span(
    traced: Any, fake_gemini: FakeGemini
) -> None:
    proxy, exporter = await traced()
    fake_gemini.push(CutStream(split_stream(text_answer("one two three four").body), after=1))
    stream = await ask(proxy, "pro", stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    server = await server_span(exporter)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert client.status.status_code is StatusCode.ERROR and client.attributes is not None
    assert "stream broke" in str(client.attributes["gemini_proxy.decision"])
    assert server.attributes is not None and str(server.attributes["error.type"]).startswith("stream_interrupted")


async def test_with_tracing_off_no_span_is_made_and_no_traceparent_is_sent(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    assert proxy.app[TRACING] is None
    await ask(proxy, "pro", extra_headers={"traceparent": TRACEPARENT})
    assert "traceparent" not in fake_gemini.requests[0]["headers"]


def test_with_tracing_off_the_opentelemetry_packages_are_not_even_imported() -> None:
    code = (
        "import sys, tomllib\n"
        "from gemini_proxy.config import parse\n"
        "from gemini_proxy.http.app import make_app\n"
        "from tests.conftest import config_toml\n"
        "app = make_app(parse(tomllib.loads(config_toml('http://127.0.0.1:9', 'http://127.0.0.1:9/v1'))), environ={})\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


async def test_an_otlp_endpoint_in_the_config_exports_the_spans_over_otlp_http(
    aiohttp_server: Callable[..., Any], fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    received: list[ExportTraceServiceRequest] = []

    async def collector(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    receiver = web.Application()
    receiver.router.add_post("/v1/traces", collector)
    otlp = await aiohttp_server(receiver)
    extra = f'\n[tracing]\notlp_endpoint = "{str(otlp.make_url("")).rstrip("/")}"\nservice_name = "proxy-under-test"\n'
    app = make_app(make_config(config_toml(fake_gemini.url, fake_openai.url, extra)), environ=ENV)
    server = await aiohttp_server(app)
    proxy = Proxy(app=app, url=str(server.make_url("")).rstrip("/"))
    try:
        await ask(proxy, "pro")
    finally:
        await proxy.clients[0].close()
    await server.close()  # the app's cleanup flushes the batch exporter
    names = {
        (span.name, span.kind)
        for batch in received
        for resource in batch.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert ("POST /v1/chat/completions", 2) in names and ("chat gemini-2.5-pro", 3) in names  # SERVER, CLIENT
    services = {
        attr.value.string_value
        for batch in received
        for resource in batch.resource_spans
        for attr in resource.resource.attributes
        if attr.key == "service.name"
    }
    assert services == {"proxy-under-test"}


# --- config ------------------------------------------------------------------------------------


def test_the_otlp_endpoint_comes_from_the_config_or_the_standard_environment_variables() -> None:
    off = TracingConfig()
    assert off.endpoint({}) is None
    assert off.endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318/v1/traces"
    assert off.endpoint({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}) == "http://c:4318/custom"
    configured = TracingConfig(otlp_endpoint="http://collector:4318/")
    assert configured.endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}) == (
        "http://collector:4318/v1/traces"
    )
    assert configured.endpoint({"OTEL_SDK_DISABLED": "true"}) is None
    assert configured.service({}) == "gemini-proxy"
    assert configured.service({"OTEL_SERVICE_NAME": "edge-proxy"}) == "edge-proxy"


@pytest.mark.parametrize(
    ("table", "key", "fix"),
    [
        ('otlp_endpoint = "collector:4318"', "tracing.otlp_endpoint", "http://otel-collector:4318"),
        ("sample_ratio = 2.0", "tracing.sample_ratio", "sample_ratio = 0.1"),
        ('otlp_endpont = "http://c:4318"', "tracing.otlp_endpont", "README"),
    ],
)
def test_a_bad_tracing_section_is_an_error_naming_the_key_and_the_fix(table: str, key: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1", f"\n[tracing]\n{table}\n"))
    assert caught.value.key == key and fix in caught.value.fix


async def test_an_embeddings_request_is_an_embeddings_client_span(traced: Any, fake_gemini: FakeGemini) -> None:
    proxy, exporter = await traced()
    await proxy.client().embeddings.create(model="google:gemini-embedding-001", input=["a", "b"])
    assert await eventually(lambda: len(by_kind(exporter, SpanKind.SERVER)) == 1)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert client.name == "embeddings gemini-embedding-001"
    assert client.attributes is not None and client.attributes["gen_ai.operation.name"] == "embeddings"


async def test_an_unknown_path_gets_a_span_named_by_its_method_only(traced: Any) -> None:
    proxy, exporter = await traced()
    status, _, _ = await post(proxy.url + "/v1/no-such-endpoint-a1b2", {"model": "pro"})
    assert status == 404
    server = await server_span(exporter)
    assert server.name == "POST" and server.attributes is not None
    assert server.attributes["http.response.status_code"] == 404
    assert server.status.status_code is not StatusCode.ERROR  # a 4xx is the caller's error


def test_tracing_on_without_the_packages_stops_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    # As if opentelemetry were not installed: the import of the module that needs it fails.
    monkeypatch.setitem(sys.modules, "gemini_proxy.observe.otel", None)
    monkeypatch.delattr(gemini_proxy.observe, "otel", raising=False)
    cfg = make_config(config_toml(fake_gemini.url, fake_openai.url))
    with pytest.raises(ValueError, match=r"pip install 'gemini-proxy\[otel\]'") as caught:
        make_app(cfg, environ={**ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in str(caught.value)


async def test_a_target_refused_before_any_call_is_an_event_not_a_client_span(
    aiohttp_server: Callable[..., Any], fake_gemini: FakeGemini, fake_openai: FakeOpenAI
) -> None:
    exporter = InMemorySpanExporter()
    cfg = make_config(config_toml(fake_gemini.url, fake_openai.url))
    app = make_app(cfg, environ={"TEST_GEMINI_KEY": ENV["TEST_GEMINI_KEY"]}, span_exporter=exporter)  # no gateway key
    server = await aiohttp_server(app)
    status, _, _ = await post(
        str(server.make_url("/v1/chat/completions")), {"model": "cn", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert status == 503
    span = await server_span(exporter)
    assert by_kind(exporter, SpanKind.CLIENT) == []
    (event,) = [e for e in span.events if e.name == "gemini_proxy.attempt_refused"]
    assert event.attributes is not None and event.attributes["error.type"] == "upstream_key_missing"
    assert span.status.status_code is StatusCode.ERROR


def test_check_says_where_traces_go() -> None:
    off = _check("--no-secrets", env={})
    on = _check("--no-secrets", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"})
    assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
    assert "tracing: off" in off.stdout
    assert "tracing: OTLP/HTTP to http://otel-collector:4318/v1/traces as service 'gemini-proxy'" in on.stdout


def test_every_operation_has_a_span_operation_name() -> None:
    """An operation added without one made every traced call of it a 500 (countTokens did)."""
    assert set(OPERATION_NAMES) == set(Operation)


async def test_a_traced_count_tokens_call_answers_and_is_a_count_tokens_client_span(
    traced: Any, fake_gemini: FakeGemini
) -> None:
    proxy, exporter = await traced()
    url = proxy.url + "/v1beta/models/google:gemini-2.5-flash:countTokens"
    status, body, _ = await post(url, {"contents": [{"role": "user", "parts": [{"text": "count these words"}]}]})
    assert status == 200 and body["totalTokens"] > 0
    assert await eventually(lambda: len(by_kind(exporter, SpanKind.SERVER)) == 1)
    (client,) = by_kind(exporter, SpanKind.CLIENT)
    assert client.attributes is not None and client.attributes["gen_ai.operation.name"] == "count_tokens"
