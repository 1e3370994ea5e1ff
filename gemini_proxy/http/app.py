"""The aiohttp application: routes, middleware order, and the lifecycle of app-wide resources.

Middlewares, outermost first: access log (one record per request, and its SERVER span when
tracing is on), errors -> OpenAI JSON, auth.
App-wide resources are typed keys (appkeys.py) opened and closed in ``cleanup_ctx``: the
Runtime's upstream sessions, the shared state's health sync (Redis) with its connection, and
the Batch API's poller (gemini_proxy/http/batch_poll.py) with its sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from gemini_proxy.adapters import REGISTRY
from gemini_proxy.adapters.interface import AdapterKind
from gemini_proxy.batch.store import BatchStore
from gemini_proxy.config import Config
from gemini_proxy.http import batch_local, wire_errors
from gemini_proxy.http.appkeys import ANSWERS, BATCHES, METER, RESPONSES, RUNTIME, STATE, TELEMETRY, TRACING
from gemini_proxy.http.auth import auth
from gemini_proxy.http.batch_poll import BatchRunner
from gemini_proxy.http.handlers import (
    batches,
    chat,
    embeddings,
    files,
    health,
    models,
    native,
    native_models,
    responses,
    stored_responses,
)
from gemini_proxy.http.middleware import access_log, errors, on_response_prepare
from gemini_proxy.observe import tracing
from gemini_proxy.observe.metrics import Metrics
from gemini_proxy.observe.telemetry import Telemetry
from gemini_proxy.resilience.clock import Clock
from gemini_proxy.resilience.keys import pool as key_pool
from gemini_proxy.routing.meter import TeamMeter
from gemini_proxy.runtime import Runtime, RuntimeRef
from gemini_proxy.state import responses as response_store
from gemini_proxy.state import sync
from gemini_proxy.state.answer_store import AnswerStore


def make_app(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    kinds: Mapping[str, AdapterKind] = REGISTRY,
    span_exporter: Any = None,
) -> web.Application:
    """Build the app; upstream sessions open lazily and close with the app. ``kinds``: the
    adapter registry (``demo`` builds some kinds against their simulators). ``span_exporter``:
    an OpenTelemetry exporter instead of OTLP (tests); tracing is otherwise on only when an
    OTLP endpoint is configured (observe/tracing.py)."""
    tracer = tracing.build(config, environ, span_exporter)  # None: off; [tracing] changes need a restart
    app = web.Application(
        middlewares=[access_log(tracer), errors, auth],
        client_max_size=config.server.max_body_bytes,
        # handler_cancellation: a client that disconnects cancels its handler, and so the
        # upstream call it is waiting on (aiohttp leaves handlers running by default).
        # auto_decompress off: http/content_encoding.py decodes bodies with the limit on the
        # decoded size and answers bad encodings with a 400/415 instead of aiohttp's 500.
        handler_args={
            "max_field_size": 16 * 1024,
            "max_line_size": 16 * 1024,
            "handler_cancellation": True,
            "auto_decompress": False,
        },
    )
    wire_errors.install(app)  # aiohttp's parser errors (header too large...) as OpenAI error objects
    state = sync.build(config.state, environ)  # None: memory; [state] changes need a restart
    app[STATE] = state
    app[RUNTIME] = RuntimeRef(Runtime.build(config, environ, clock, state, kinds))
    app[METER] = TeamMeter(state=state, replicas=config.local_shares)
    app[RESPONSES] = response_store.build(config.responses, state)  # [responses] changes need a restart
    app[TELEMETRY] = Telemetry(Metrics())
    app[ANSWERS] = AnswerStore(state) if clock is None else AnswerStore(state, clock.now)
    app[TRACING] = tracer  # for its shutdown with the app
    # Live lane state, read at each scrape from whichever Runtime is current (reload swaps it).
    app[TELEMETRY].metrics.register_source("lane", lambda: app[RUNTIME].current.guard.lane_gauges(), label="lane")
    app[TELEMETRY].metrics.register_source(
        "upstream_keys", lambda: key_pool.gauges(app[RUNTIME].current.keys), label="upstream"
    )
    store = BatchStore(config.batch.dir)
    app[BATCHES] = BatchRunner(store, app[RUNTIME], app[TELEMETRY], app[METER], batch_local.run_lines)
    app.on_response_prepare.append(on_response_prepare)
    app.cleanup_ctx.append(_runtime_lifecycle)
    app.cleanup_ctx.append(_state_lifecycle)
    app.cleanup_ctx.append(_tracing_lifecycle)
    app.cleanup_ctx.append(_batch_lifecycle)
    app.router.add_post("/v1/chat/completions", chat.chat_completions)
    app.router.add_post("/v1/responses", responses.create_response)
    app.router.add_get("/v1/responses/{response_id}", stored_responses.retrieve)
    app.router.add_delete("/v1/responses/{response_id}", stored_responses.delete)
    app.router.add_get("/v1/responses/{response_id}/input_items", stored_responses.input_items)
    app.router.add_get("/v1/models", models.list_models)
    app.router.add_post("/v1/embeddings", embeddings.embeddings)
    for path in native.PATHS:  # google-genai's native surface, v1beta and v1
        app.router.add_post(path, native.generate)
    app.router.add_get("/v1beta/models", native_models.list_models)  # /v1/models stays OpenAI's
    app.router.add_get("/v1beta/models/{call}", native_models.get_model)
    # OpenAI's Batch API on Gemini's (README "Batch API").
    app.router.add_post("/v1/files", files.upload)
    app.router.add_get("/v1/files", files.list_files)
    app.router.add_get("/v1/files/{file_id}", files.retrieve)
    app.router.add_delete("/v1/files/{file_id}", files.delete)
    app.router.add_get("/v1/files/{file_id}/content", files.content)
    app.router.add_post("/v1/batches", batches.create)
    app.router.add_get("/v1/batches", batches.list_batches)
    app.router.add_get("/v1/batches/{batch_id}", batches.retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", batches.cancel)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_get("/status", health.status)
    return app


async def _runtime_lifecycle(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[RUNTIME].current.close()


async def _tracing_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Export the spans still buffered when the app stops (off the loop: the exporter blocks)."""
    yield
    provider = app[TRACING]
    if provider is not None:
        await asyncio.to_thread(provider.shutdown)


async def _state_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Pull other replicas' key and circuit health while the app serves; close the backend after."""
    state = app[STATE]
    if state is None:
        yield
        return

    async def pull() -> None:
        rt = app[RUNTIME].current  # whichever Runtime is current: reloads swap it
        await sync.pull_once(state, rt.keys, rt.guard.apply_shared_breakers)

    task = asyncio.create_task(sync.sync_forever(state, app[RUNTIME].current.config.state.sync_s, pull))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await state.close()


async def _batch_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Poll the Batch API's unfinished jobs while the app serves (``[batch] poller``); a restart resumes them."""
    runner = app[BATCHES]
    task = asyncio.create_task(runner.run()) if app[RUNTIME].current.config.batch.poller else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await runner.close()
