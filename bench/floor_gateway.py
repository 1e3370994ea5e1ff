"""A second floor: the relay plus only what *every* gateway request must do (json passthrough).

The bare relay (:mod:`bench.relay`) forwards bytes. No gateway can: it has to read the ``model``
to route, send the upstream's model name, read the usage back for the log and the cost, give the
request an id, and write its log line and metrics. This app does exactly that and nothing else
(no auth, teams, limits, keys, retries, deadline, checks or schema), the way the proxy's json
passthrough does it (the answer's bytes go back unchanged, the same headers upstream and back),
so the share of the proxy's CPU that its features cost can be read against it::

    python -m bench.inproc --server gateway --cpu
    python -m bench.run --targets direct-openai,relay,gateway-floor,proxy-passthrough --modes json
    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m bench.inproc --server gateway --requests 50
    PYTHONHASHSEED=0 valgrind --tool=callgrind python -m bench.inproc --server gateway --requests 350

``FLOOR_LEVEL`` (environment, or ``make_app(level=)``): 1 = the request id, the body parsed, the
model swapped and re-serialised, the usage read; 2 = + one counter and one histogram
(prometheus_client, as the proxy); 3 (default) = + the access line through the proxy's own log
plumbing (orjson, batched to the writer thread). Non-stream passthrough requests only.
"""

from __future__ import annotations

import logging
import os
import time

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from bench.relay import SESSION, UPSTREAM, forwarding_app, run
from gemini_proxy.adapters.unique import unique_hex
from gemini_proxy.observe.accesslog import log_access, setup_logging, stop_logging

UPSTREAM_MODEL = "gemini-2.5-flash"


def make_app(upstream: str, level: int | None = None) -> web.Application:
    level = int(os.environ.get("FLOOR_LEVEL", "3")) if level is None else level
    registry = CollectorRegistry()
    requests = Counter("floor_requests", "requests", ["team", "model", "status"], registry=registry)
    latency = Histogram("floor_latency_seconds", "latency", ["model"], registry=registry)

    async def gateway(request: web.Request) -> web.Response:
        started = time.perf_counter()
        request_id = "req_" + unique_hex()
        body = orjson.loads(await request.read())
        public_model = body.get("model")
        body["model"] = UPSTREAM_MODEL  # routing: the alias becomes the upstream's model
        headers = {"Content-Type": "application/json", "Authorization": "Bearer floor-made-up-key"}
        url = request.app[UPSTREAM] + request.path_qs
        async with request.app[SESSION].post(url, data=orjson.dumps(body), headers=headers) as up:
            status, raw = up.status, await up.read()
        usage = orjson.loads(raw).get("usage") or {}  # for the log and the cost; the bytes go back as they came
        answer_headers = {"x-request-id": request_id, "x-model-used": UPSTREAM_MODEL, "x-upstream-used": "floor"}
        resp = web.Response(status=status, body=raw, content_type="application/json", headers=answer_headers)
        spent = time.perf_counter() - started
        if level >= 2:
            requests.labels("team", public_model, str(status)).inc()
            latency.labels(public_model).observe(spent)
        if level >= 3:
            log_access(
                {
                    "request_id": request_id,
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

    # As the proxy's upstream sessions (adapters/base.py): no User-Agent of aiohttp's own.
    return forwarding_app(upstream, gateway, skip_auto_headers=("User-Agent",))


def main() -> None:
    """Its own process for ``bench.run`` (target ``gateway-floor``): the access lines go to stdout,
    as the proxy's do, through the same writer thread."""
    listener = setup_logging(level=logging.INFO)
    try:
        run(__doc__, make_app)
    finally:
        stop_logging(listener)


if __name__ == "__main__":
    main()
