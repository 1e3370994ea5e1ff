"""The floor: a bare aiohttp relay with no parsing, no translation, no logging.

One shared ClientSession; the request body is forwarded as bytes to the same path upstream and
the answer comes back as bytes (SSE chunk by chunk as they arrive). No Python proxy built on
aiohttp can be cheaper than this, so the proxy's numbers are read against it.
It runs on the same event loop as the proxy under test (``--event-loop``), so the loop is not
what the comparison measures. Run: ``python -m bench.relay --port 9100 --upstream http://127.0.0.1:9000``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
_FORWARD = ("Content-Type", "Authorization")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {k: request.headers[k] for k in _FORWARD if k in request.headers}
    url = request.app[UPSTREAM] + request.path_qs
    async with request.app[SESSION].post(url, data=body, headers=headers) as up:
        ctype = up.headers.get("Content-Type", "application/octet-stream")
        if not ctype.startswith("text/event-stream"):
            return web.Response(status=up.status, body=await up.read(), headers={"Content-Type": ctype})
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": ctype})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def forwarding_app(upstream: str, handler: Handler, **session_options: Any) -> web.Application:
    """An app that hands every POST to ``handler``, with one shared upstream session (and /healthz)."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), **session_options)
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", handler)
    app.router.add_get("/healthz", healthz)
    return app


def make_app(upstream: str) -> web.Application:
    return forwarding_app(upstream, relay)


def run(description: str | None, make: Callable[[str], web.Application]) -> None:
    """The command line of a server under test: ``--port``, ``--upstream``, ``--event-loop``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="root URL of the upstream, e.g. http://127.0.0.1:9000")
    parser.add_argument("--event-loop", default="asyncio", choices=("asyncio", "uvloop"), help="as the proxy's")
    args = parser.parse_args()
    loop = None
    if args.event_loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(make(args.upstream), host=args.host, port=args.port, access_log=None, print=None, loop=loop)


def main() -> None:
    run(__doc__, make_app)


if __name__ == "__main__":
    main()
