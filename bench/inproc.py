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
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from bench import stack
from bench.fake import Fake
from bench.run import openai_body
from gemini_proxy.config import load
from gemini_proxy.http.app import make_app
from gemini_proxy.observe.accesslog import setup_logging, stop_logging


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def run(requests: int, model: str, stream: bool, tmp: Path) -> None:
    fake_runner, fake_port = await _serve(Fake().app())
    config = stack.proxy_config(tmp / "routing.toml", 0, f"http://127.0.0.1:{fake_port}")
    proxy_runner, port = await _serve(make_app(load(config), environ={stack.KEY_ENV: stack.KEY}))
    body = orjson.dumps(openai_body(model, stream))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(requests):
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
    await proxy_runner.cleanup()
    await fake_runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--model", default="bench-passthrough", choices=("bench-passthrough", "bench-gemini"))
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    with open(os.devnull, "w") as sink, tempfile.TemporaryDirectory() as tmp:
        listener = setup_logging(stream=sink, level=logging.INFO)  # the access line is written, as in serve
        try:
            import uvloop

            uvloop.run(run(args.requests, args.model, args.stream, Path(tmp)))
        finally:
            stop_logging(listener)


if __name__ == "__main__":
    main()
