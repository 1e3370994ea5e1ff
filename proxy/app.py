"""The aiohttp application: routes, middleware order, and the lifecycle of app-wide resources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from proxy import handlers
from proxy.config import Config
from proxy.middleware import access_log, errors, on_response_prepare
from proxy.runtime import Runtime
from proxy.state import RUNTIME, RuntimeRef


def make_app(config: Config, *, environ: Mapping[str, str] | None = None) -> web.Application:
    """Build the app; upstream sessions open lazily and close with the app."""
    app = web.Application(
        middlewares=[access_log, errors],
        client_max_size=config.server.max_body_bytes,
        # handler_cancellation: a client that disconnects cancels its handler, and so the
        # upstream call it is waiting on (aiohttp leaves handlers running by default).
        handler_args={"max_field_size": 16 * 1024, "max_line_size": 16 * 1024, "handler_cancellation": True},
    )
    app[RUNTIME] = RuntimeRef(Runtime.build(config, environ))
    app.on_response_prepare.append(on_response_prepare)
    app.cleanup_ctx.append(_runtime_lifecycle)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_get("/v1/models", handlers.list_models)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    return app


async def _runtime_lifecycle(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[RUNTIME].current.close()
