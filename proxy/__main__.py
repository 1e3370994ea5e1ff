"""Command line: serve | demo | check | hash-key | report.

gemini-proxy serve --config routing.toml [--env prod] [--host H] [--port P]   # SIGHUP reloads
gemini-proxy demo  [--config routing.toml] [--port P]   # simulated upstreams, no key, no network
                                                        # (no ./routing.toml: the example in the package)
gemini-proxy check --config routing.toml [--env prod] [--no-secrets]   # validate, print routes; exit 1 on a missing key
gemini-proxy hash-key < keyfile                          # SHA-256 of a client key for [teams]
gemini-proxy report LOGFILE [--by team|task|model] [--since 24h] [--format table|csv|json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web

from adapters.redact import redact
from adapters.simulated import SimulatedGemini, SimulatedOpenAI
from proxy import loop
from proxy.app import make_app
from proxy.config import Config, ConfigError, load
from proxy.examples import example_config
from proxy.key_pool import KeyPool
from proxy.keys import hash_client_key, read_keys
from proxy.reload import Reloader
from proxy.report import BY, FORMATS, aggregate, parse_since, read_lines
from proxy.runtime import blocking_key_problems
from proxy.state import RUNTIME
from proxy.telemetry import LOG, setup_logging, stop_logging

_DEFAULT_CONFIG = "routing.toml"


def _find_config(path: str) -> Path:
    """The given path; without --config and no ./routing.toml, the example shipped in the package."""
    candidate = Path(path)
    if candidate.exists() or path != _DEFAULT_CONFIG:
        return candidate
    return example_config()


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load(_find_config(args.config), args.env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{config.path}: OK (env: {config.env or 'none: base config'})")
    print("\nupstreams (keys shown only as short hashes):")
    for name, up in config.upstreams.items():
        region = f" region={up.region}" if up.region else ""
        optional = " (optional)" if up.optional else ""
        print(f"  {name:<12} kind={up.kind:<7} {up.spec.base_url}{region}{optional}")
        for key in read_keys(up) or []:
            print(f"      key {key.source}: {key.id if key.value else f'MISSING ({key.problem})'}")
        if not up.key_envs and not up.key_files:
            print("      key: none configured")
    print("\nmodels (client 'model' values):")
    for name, alias in config.models.items():
        note = f"  # {alias.description}" if alias.description else ""
        print(f"  {name:<20} -> {' -> '.join(str(t) for t in alias.targets)}{note}")
    print("\ntasks (x-task header):")
    for name, task in config.tasks.items():
        regions = f"  regions={list(task.allowed_regions)}" if task.allowed_regions else ""
        note = f"  # {task.description}" if task.description else ""
        print(f"  {name:<20} -> {' -> '.join(str(t) for t in task.targets)}  (via {task.model}){regions}{note}")
    state = config.state
    if state.backend == "memory":
        print("\nstate: memory (limits, budgets and key health are this process's own)")
    else:
        where = f"env:{state.url_env}" if state.url_env else redact(state.url)  # the URL may hold a password
        print(
            f"\nstate: {state.backend} at {where}, prefix {state.key_prefix!r}, on error: {state.on_state_error}"
            f" (local fallback divides limits by replicas={state.replicas})"
        )
    print("\nteams:" if config.teams else "\nteams: none, so auth is OFF (every client is let in)")
    for name, team in config.teams.items():
        limits = [f"keys={len(team.key_sha256)}"]
        for label, value in (
            ("tasks", team.allowed_tasks),
            ("models", team.allowed_models),
            ("regions", team.allowed_regions),
        ):
            if value is not None:
                limits.append(f"{label}={sorted(value)}")
        if team.rpm:
            limits.append(f"rpm={team.rpm}")
        if team.daily_budget_usd:
            limits.append(f"budget=${team.daily_budget_usd:g}/day")
        print(f"  {name:<20} {' '.join(limits)}")
    return _missing_keys(config, args.no_secrets)


def _missing_keys(config: Config, no_secrets: bool) -> int:
    """Exit status of `check`: 1 when a key that /readyz needs is missing, unless --no-secrets."""
    blocking = blocking_key_problems(config, {name: KeyPool.build(up).problem for name, up in config.upstreams.items()})
    if not blocking:
        return 0
    for name, why in blocking.items():
        where = "note" if no_secrets else "error"
        print(f"{where}: upstream {name} has no key: {why}", file=sys.stderr)
    if no_secrets:
        print("(--no-secrets: the config is valid; serve would not be ready until those keys exist)", file=sys.stderr)
        return 0
    print(
        "fix: set the variable or write the file named above; mark a fallback upstream `optional = true` "
        "if it may run without a key; or validate the config alone with `check --no-secrets`",
        file=sys.stderr,
    )
    return 1


def cmd_hash_key(args: argparse.Namespace) -> int:
    """Read a client key on stdin (never argv: it would land in shell history and `ps`)."""
    key = sys.stdin.read().strip()
    if not key:
        print('error: no key on stdin (try: printf %s "$KEY" | gemini-proxy hash-key)', file=sys.stderr)
        return 1
    print(hash_client_key(key))
    return 0


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    grace_s: float,
    started: asyncio.Future[int] | None = None,
    reloader: Reloader | None = None,
) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace_s, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if reloader is not None:
        reloads: set[asyncio.Task[bool]] = set()

        def on_hup() -> None:
            task = asyncio.ensure_future(reloader.reload(app))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
    bound = runner.addresses[0][1] if runner.addresses else port
    event_loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # "uvloop" or "asyncio"
    LOG.info("listening", extra={"host": host, "port": bound, "event_loop": event_loop})
    if started is not None:
        started.set_result(bound)
    try:
        await stop.wait()
    finally:
        # Readiness fails first, so a load balancer stops sending new work while in-flight
        # requests get up to grace_s to finish.
        app[RUNTIME].draining = True
        LOG.info("shutting down", extra={"grace_s": grace_s})
        await runner.cleanup()


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = load(args.config, args.env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    listener = setup_logging(file=args.log_file or config.logging.file)
    try:
        app = make_app(config)
    except ValueError as exc:  # e.g. [state] url_env names an unset variable: a message, not a traceback
        stop_logging(listener)
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 1
    try:
        reloader = Reloader(args.config, args.env)
        reloader.attach(app)
        with loop.runner(config.server.event_loop) as runner:
            runner.run(_serve(app, host, port, config.server.shutdown_grace_s, reloader=reloader))
    except OSError as exc:  # e.g. the port is taken: a message, not a traceback
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        stop_logging(listener)  # after the app's cleanup: flushes every queued log line
    return 0


# The built-in simulated upstream for each kind, and the path its API lives under.
SIMULATORS: Mapping[str, tuple[Callable[[], Any], str]] = {
    "gemini": (SimulatedGemini, ""),
    "openai": (SimulatedOpenAI, "/v1"),
}


def _demo_config(config: Config, urls: Mapping[str, str]) -> tuple[Config, Mapping[str, str]]:
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
    return dataclasses.replace(config, upstreams=MappingProxyType(upstreams)), environ


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
    sims = []
    urls = {}
    for kind, (make, prefix) in SIMULATORS.items():
        runner = web.AppRunner(make().app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        sims.append(runner)
        urls[kind] = f"http://127.0.0.1:{runner.addresses[0][1]}{prefix}"
    demo_config, environ = _demo_config(config, urls)
    app = make_app(demo_config, environ=environ)
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(_serve(app, host, port, 5.0, started))
    try:
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
        config = load(_find_config(args.config))
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


def cmd_report(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = aggregate(read_lines(args.logfile), by=args.by, since=since)
    except OSError as exc:
        print(f"error: cannot read {args.logfile}: {exc.strerror}", file=sys.stderr)
        return 1
    sys.stdout.write(FORMATS[args.format](report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemini-proxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("serve", cmd_serve, "run the proxy"),
        ("demo", cmd_demo, "run against the built-in simulated Gemini"),
        ("check", cmd_check, "validate a config and print its routes"),
    ):
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        p.add_argument("--config", default=_DEFAULT_CONFIG, help="path to routing.toml")
        if name == "check":
            p.add_argument(
                "--no-secrets",
                action="store_true",
                help="validate a config whose keys are not here (CI, image builds): missing keys are notes",
            )
        if name != "demo":
            p.add_argument(
                "--env",
                default=os.environ.get("GEMINI_PROXY_ENV") or None,
                help="apply the [env.NAME] overlay (default: $GEMINI_PROXY_ENV)",
            )
        if name != "check":
            p.add_argument("--host", default=None)
            p.add_argument("--port", type=int, default=None)
            p.add_argument("--log-file", default=None, help="also write the JSON log lines to this file")
    hk = sub.add_parser("hash-key", help="print the SHA-256 of a client key read from stdin, for [teams]")
    hk.set_defaults(func=cmd_hash_key)
    rp = sub.add_parser("report", help="cost and latency report from a JSON request log")
    rp.set_defaults(func=cmd_report)
    rp.add_argument("logfile", help="the JSON log (one request per line); - reads stdin")
    rp.add_argument("--by", choices=sorted(BY), default="team", help="group rows by (default: team)")
    rp.add_argument("--since", default=None, help="only requests since: 30m, 24h, 7d or an ISO 8601 time")
    rp.add_argument("--format", choices=sorted(FORMATS), default="table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
