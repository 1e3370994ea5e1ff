"""The aiohttp application: routes, middleware order, and the lifecycle of app-wide resources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from proxy import embeddings, handlers, key_pool, native, state_sync, wire_errors
from proxy.auth import auth
from proxy.clock import Clock
from proxy.config import Config
from proxy.meter import METER, TeamMeter
from proxy.metrics import CONTENT_TYPE, Metrics
from proxy.middleware import access_log, errors, on_response_prepare
from proxy.runtime import Runtime
from proxy.state import RUNTIME, RuntimeRef
from proxy.telemetry import TELEMETRY, Telemetry


def make_app(
    config: Config, *, environ: Mapping[str, str] | None = None, clock: Clock | None = None
) -> web.Application:
    """Build the app; upstream sessions open lazily and close with the app."""
    app = web.Application(
        middlewares=[access_log, errors, auth],
        client_max_size=config.server.max_body_bytes,
        # handler_cancellation: a client that disconnects cancels its handler, and so the
        # upstream call it is waiting on (aiohttp leaves handlers running by default).
        # auto_decompress off: proxy/content_encoding.py decodes bodies with the limit on the
        # decoded size and answers bad encodings with a 400/415 instead of aiohttp's 500.
        handler_args={
            "max_field_size": 16 * 1024,
            "max_line_size": 16 * 1024,
            "handler_cancellation": True,
            "auto_decompress": False,
        },
    )
    wire_errors.install(app)  # aiohttp's parser errors (header too large...) as OpenAI error objects
    state = state_sync.build(config.state, environ)  # None: memory; [state] changes need a restart
    app[state_sync.STATE] = state
    app[RUNTIME] = RuntimeRef(Runtime.build(config, environ, clock, state))
    app[METER] = TeamMeter(state=state, replicas=config.state.replicas)
    app[TELEMETRY] = Telemetry(Metrics())
    # Live lane state, read at each scrape from whichever Runtime is current (reload swaps it).
    app[TELEMETRY].metrics.register_source("lane", lambda: app[RUNTIME].current.guard.lane_gauges(), label="lane")
    app[TELEMETRY].metrics.register_source(
        "upstream_keys", lambda: key_pool.gauges(app[RUNTIME].current.keys), label="upstream"
    )
    app.on_response_prepare.append(on_response_prepare)
    app.cleanup_ctx.append(_runtime_lifecycle)
    app.cleanup_ctx.append(state_sync.lifecycle)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_post("/v1/embeddings", embeddings.embeddings)
    for path in native.PATHS:  # google-genai's native surface, v1beta and v1
        app.router.add_post(path, native.generate)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", handlers.status)
    return app


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; lanes and limiters add gauges via ``app[TELEMETRY].metrics.register_source``."""
    body = request.app[TELEMETRY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _runtime_lifecycle(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[RUNTIME].current.close()
