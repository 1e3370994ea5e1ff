"""A second floor: the relay plus only what *every* gateway request must do (json passthrough).

The bare relay (:mod:`bench.relay`) forwards bytes. No gateway can: it has to read the ``model``
to route, send the upstream's model name, read the usage back for the log and the cost, and
write the request's log line and metrics. This app does exactly that and nothing else (no
auth, teams, limits, keys, retries, deadline, checks or schema), so the share of the proxy's CPU
that its features cost can be read against it::

    python -m bench.inproc --server gateway --cpu
    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m bench.inproc --server gateway --requests 50
    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m bench.inproc --server gateway --requests 350

``--level`` (env ``FLOOR_LEVEL``): 1 = parse, swap and re-serialise only; 2 = + one counter and one
histogram (prometheus_client, as the proxy); 3 (default) = + the access line through the proxy's
own log plumbing (orjson, batched to the writer thread). Non-stream requests only.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from bench.relay import SESSION, UPSTREAM
from gemini_proxy.observe.accesslog import log_access

UPSTREAM_MODEL = "gemini-2.5-flash"


def make_app(upstream: str, level: int | None = None) -> web.Application:
    level = int(os.environ.get("FLOOR_LEVEL", "3")) if level is None else level
    registry = CollectorRegistry()
    requests = Counter("floor_requests", "requests", ["team", "model", "status"], registry=registry)
    latency = Histogram("floor_latency_seconds", "latency", ["model"], registry=registry)

    async def gateway(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = orjson.loads(await request.read())
        public_model = body.get("model")
        body["model"] = UPSTREAM_MODEL  # routing: the alias becomes the upstream's model
        headers = {"Content-Type": "application/json", "Authorization": "Bearer floor-made-up-key"}
        url = request.app[UPSTREAM] + request.path_qs
        async with request.app[SESSION].post(url, data=orjson.dumps(body), headers=headers) as up:
            status, raw = up.status, await up.read()
        answer = orjson.loads(raw)
        usage = answer.get("usage") or {}
        answer["model"] = public_model  # the client sees the name it asked for
        resp = web.Response(status=status, body=orjson.dumps(answer), content_type="application/json")
        spent = time.perf_counter() - started
        if level >= 2:
            requests.labels("team", public_model, str(status)).inc()
            latency.labels(public_model).observe(spent)
        if level >= 3:
            log_access(
                {
                    "request_id": request.headers.get("x-request-id", "floor"),
                    "task_type": None,
                    "model_used": UPSTREAM_MODEL,
                    "latency_ms": round(spent * 1000.0, 3),
                    "status_code": status,
                    "retry_count": 0,
                    "input_tokens": usage.get("prompt_tokens"),
                    "output_tokens": usage.get("completion_tokens"),
                    "team_id": None,
                    "cost_usd": 0.0,
                }
            )
        return resp

    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", gateway)
    return app
