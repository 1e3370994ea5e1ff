"""Instructions per request, for code-level A/B on a shared machine: ``valgrind --tool=callgrind``.

Wall and CPU time move with whatever else the machine runs; the number of instructions a run
executes barely does. This drives N requests through the proxy's app in ONE process (the fake
upstream and the client beside it, all on loopback), so a run under callgrind counts all three;
two runs with different N give the cost of one request, and the client's and fake's shares
cancel out between variants of the proxy's code (A/B: same N, same body, same mode).

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p python -m bench.inproc --requests 100
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p python -m bench.inproc --requests 400
    # instructions per request = (Ir of 400 - Ir of 100) / 300  ("totals:" line of callgrind_annotate)

For an A/B, run the same N from two checkouts (the old one with ``cwd`` on its copy) and
divide the difference of the totals by N: imports and start-up are the same on both sides.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from bench import floor_gateway, relay, stack
from bench.fake import MODEL, Fake
from bench.run import openai_body
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.config import load
from gemini_proxy.http.app import make_app
from gemini_proxy.observe.accesslog import setup_logging, stop_logging


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


def _target(server: str, model: str, stream: bool, fake_port: int, port: int) -> tuple[str, bytes]:
    """The URL and body the client sends: to the proxy or relay, or to the fake itself (``direct``)."""
    if server == "direct" and model == "bench-gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = translate.build_request(MODEL, openai_body(model, stream))
        return f"http://127.0.0.1:{fake_port}/v1beta/models/{MODEL}:{method}", orjson.dumps(body)
    host_port = fake_port if server == "direct" else port
    return f"http://127.0.0.1:{host_port}/v1/chat/completions", orjson.dumps(openai_body(model, stream))


async def run(requests: int, model: str, stream: bool, tmp: Path, server: str = "proxy") -> float:
    """Drive ``requests`` requests one after another; return the process CPU seconds they took."""
    fake_runner, fake_port = await _serve(Fake().app())
    server_runner, port = None, 0
    if server == "proxy":
        config = stack.proxy_config(tmp / "routing.toml", 0, f"http://127.0.0.1:{fake_port}")
        server_runner, port = await _serve(make_app(load(config), environ={stack.KEY_ENV: stack.KEY}))
    elif server == "relay":
        server_runner, port = await _serve(relay.make_app(f"http://127.0.0.1:{fake_port}"))
    elif server == "gateway":
        server_runner, port = await _serve(floor_gateway.make_app(f"http://127.0.0.1:{fake_port}"))
    url, body = _target(server, model, stream, fake_port, port)
    headers = {"Content-Type": "application/json", "x-goog-api-key": stack.KEY}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(min(50, requests)):  # warm-up: first-request compiles, pools, caches
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
        started = time.process_time()
        for _ in range(requests):
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
        spent = time.process_time() - started
    if server_runner is not None:
        await server_runner.cleanup()
    await fake_runner.cleanup()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--model", default="bench-passthrough", choices=("bench-passthrough", "bench-gemini"))
    parser.add_argument("--stream", action="store_true")
    parser.add_argument(
        "--server",
        default="proxy",
        choices=("proxy", "relay", "gateway", "direct"),
        help="what sits between client and fake: the proxy, the bare relay (bench/relay.py), the relay plus "
        "only what every gateway request must do (bench/floor_gateway.py, json passthrough) or nothing",
    )
    parser.add_argument("--cpu", action="store_true", help="print CPU µs per request of the measured loop")
    args = parser.parse_args()
    if args.server == "gateway" and (args.stream or args.model != "bench-passthrough"):
        parser.error("--server gateway measures json passthrough only (no --stream, --model bench-passthrough)")
    with open(os.devnull, "w") as sink, tempfile.TemporaryDirectory() as tmp:
        listener = setup_logging(stream=sink, level=logging.INFO)  # the access line is written, as in serve
        try:
            import uvloop

            spent = uvloop.run(run(args.requests, args.model, args.stream, Path(tmp), args.server))
            if args.cpu:
                print(
                    f"{args.server} {args.model} {'stream' if args.stream else 'json'}: "
                    f"{spent / args.requests * 1e6:.1f} µs CPU per request (client + fake included)"
                )
        finally:
            stop_logging(listener)


if __name__ == "__main__":
    main()
