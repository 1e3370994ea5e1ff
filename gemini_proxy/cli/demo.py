"""``gemini-proxy demo``: the config's routes against the built-in simulated upstreams: no key, no network.

Each upstream is pointed at the simulator its kind names in the adapter REGISTRY
(gemini_proxy/adapters/__init__.py), so every kind a config can hold (gemini, openai, vertex)
gets one, with a placeholder key; a kind whose production credentials a demo machine lacks
(Vertex: Google's application-default credentials) is built the way its simulator says.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web

from gemini_proxy.adapters import REGISTRY
from gemini_proxy.adapters.interface import AdapterKind
from gemini_proxy.cli import loop
from gemini_proxy.cli.check import find_config
from gemini_proxy.cli.serve import serve_app
from gemini_proxy.config import Config, ConfigError, load
from gemini_proxy.http.app import make_app
from gemini_proxy.observe.accesslog import setup_logging


def _demo_config(config: Config, urls: Mapping[str, str], batch_dir: str) -> tuple[Config, Mapping[str, str]]:
    """Point every upstream at the simulated server of its kind and give each a placeholder key."""
    upstreams = {}
    environ: dict[str, str] = {}
    for name, up in config.upstreams.items():
        env_name = f"DEMO_KEY_{name.upper().replace('-', '_').replace('.', '_')}"
        upstreams[name] = dataclasses.replace(
            up,
            spec=dataclasses.replace(up.spec, base_url=urls[up.kind]),
            api_key_env=env_name,
            api_key_file=None,
            api_keys_env=(),
            api_key_files=(),
        )
        environ[env_name] = "demo-simulated-key"
    # Batches in a folder of their own that goes with the demo, polled fast: the simulated jobs end at once.
    batch = dataclasses.replace(config.batch, dir=batch_dir, poll_s=0.2, poll_max_s=1.0, poller=True)
    return dataclasses.replace(config, upstreams=MappingProxyType(upstreams), batch=batch), environ


def demo_kinds(kinds: Mapping[str, AdapterKind] = REGISTRY) -> dict[str, AdapterKind]:
    """The registry as demo builds it: each kind by its simulator's rule when it has one."""
    return {
        name: dataclasses.replace(kind, build=kind.simulator.build)
        if kind.simulator is not None and kind.simulator.build is not None
        else kind
        for name, kind in kinds.items()
    }


async def start_simulators(kinds: Mapping[str, AdapterKind]) -> tuple[list[web.AppRunner], dict[str, str]]:
    """One simulated server per kind that has one, on loopback; the base URL of each kind."""
    runners, urls = [], {}
    for name, kind in kinds.items():
        if kind.simulator is None:
            continue
        runner = web.AppRunner(kind.simulator.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{runner.addresses[0][1]}{kind.simulator.prefix}"
    return runners, urls


_SNIPPET = """
gemini-proxy demo is serving {routes} against the built-in simulated Gemini (no key, no network).
Config: {path}

Try it with the OpenAI SDK (pip install openai):

    from openai import OpenAI
    client = OpenAI(base_url="http://{host}:{port}/v1", api_key="unused-in-demo")
    reply = client.chat.completions.create(
        model="{model}", messages=[{{"role": "user", "content": "Hello!"}}])
    print(reply.choices[0].message.content)

or with curl:

    curl -s http://{host}:{port}/v1/chat/completions -H 'content-type: application/json' \\
      -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Routes: GET http://{host}:{port}/v1/models   Stop with Ctrl-C.
"""


async def _demo(config: Config, host: str, port: int) -> None:
    sims, urls = await start_simulators(REGISTRY)
    try:
        missing = sorted({up.kind for up in config.upstreams.values()} - set(urls))
        if missing:  # a kind without a simulator: say so rather than fail on a missing URL
            raise SystemExit(f"error: demo has no simulated upstream for kind {', '.join(missing)}")
        # ignore_cleanup_errors: a poller thread may still be touching the folder as the demo stops.
        with tempfile.TemporaryDirectory(prefix="gemini-proxy-demo-batches-", ignore_cleanup_errors=True) as batch_dir:
            demo_config, environ = _demo_config(config, urls, batch_dir)
            app = make_app(demo_config, environ=environ, kinds=demo_kinds())
            started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            server = asyncio.create_task(serve_app(app, host, port, 5.0, started))
            bound = await _started(server, started)
            model = next(iter(config.models), "fast")
            routes = f"{len(config.models)} model aliases and {len(config.tasks)} tasks"
            print(
                _SNIPPET.format(routes=routes, path=config.path, host=host, port=bound, model=model),
                file=sys.stderr,
                flush=True,
            )
            await server
    finally:
        for runner in sims:
            await runner.cleanup()


async def _started(server: asyncio.Task[None], started: asyncio.Future[int]) -> int:
    """The bound port, or the server's own error (e.g. the port is taken) if it failed to start."""
    waiting: set[asyncio.Future[Any]] = {server, started}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        await server  # raises the startup error
        raise RuntimeError("server stopped before it started")
    return started.result()


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        config = load(find_config(args.config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    listener = setup_logging(file=args.log_file)
    host, port = args.host or "127.0.0.1", 8080 if args.port is None else args.port
    try:
        with loop.runner(config.server.event_loop) as runner:  # the same loop as serve: uvloop by default
            runner.run(_demo(config, host, port))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc} (try --port 0)", file=sys.stderr)
        return 1
    finally:
        listener.stop()
    return 0
