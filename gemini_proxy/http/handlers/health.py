"""Operations endpoints: ``/healthz`` (alive), ``/readyz`` (keys and drain), ``/status`` (live
resilience state as JSON) and ``/metrics`` (Prometheus). None is logged or authenticated.
"""

from __future__ import annotations

import os

import orjson
from aiohttp import web

from gemini_proxy.http.answer import JSON
from gemini_proxy.http.appkeys import RUNTIME, TELEMETRY
from gemini_proxy.observe.metrics import CONTENT_TYPE
from gemini_proxy.runtime import Runtime


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=JSON)


async def readyz(request: web.Request) -> web.Response:
    rt: Runtime = request.app[RUNTIME].current
    problems = rt.readiness_problems()
    upstreams = {
        name: {
            "kind": up.kind,
            "key": "missing" if rt.keys[name].problem else rt.keys[name].id,
            "optional": up.optional,
        }
        for name, up in rt.config.upstreams.items()
    }
    ready = not problems and not request.app[RUNTIME].draining
    body = {"status": "ready" if ready else "not_ready", "upstreams": upstreams, "problems": problems}
    body["resilience"] = rt.guard.summary()
    return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=JSON)


async def status(request: web.Request) -> web.Response:
    """Lanes (concurrency, depth), rate-limit levels and circuit breakers, as plain JSON; ``pid``
    names the process that answered (each of ``serve --workers N`` has its own)."""
    snapshot = {"pid": os.getpid(), **request.app[RUNTIME].current.guard.snapshot()}
    return web.Response(body=orjson.dumps(snapshot), content_type=JSON)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; lanes and limiters add gauges via ``app[TELEMETRY].metrics.register_source``."""
    body = request.app[TELEMETRY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
