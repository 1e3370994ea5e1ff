"""``gemini-proxy serve``: listen, reload on SIGHUP, drain on SIGTERM (``--workers N``: cli/workers.py).

On SIGTERM/SIGINT readiness fails first (``/readyz`` 503, so a load balancer stops sending new
work), then in-flight requests get ``shutdown_grace_s`` to finish; the log queue is flushed
after the app's cleanup, so no line is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from aiohttp import web

from gemini_proxy.cli import loop
from gemini_proxy.cli.workers import follow_parent, run_workers
from gemini_proxy.config import ConfigError, load, with_workers
from gemini_proxy.http.app import make_app
from gemini_proxy.http.appkeys import RUNTIME
from gemini_proxy.http.reload import Reloader
from gemini_proxy.observe.accesslog import LOG, setup_logging, stop_logging


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    grace_s: float,
    started: asyncio.Future[int] | None = None,
    reloader: Reloader | None = None,
    reuse_port: bool = False,
) -> None:
    # aiohttp (3.14) waits for in-flight handlers up to shutdown_timeout, then cancels their
    # requests and waits up to shutdown_timeout again before it cuts them: half the grace each,
    # so the drain ends at the grace configured (a container's stop period is set from it).
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace_s / 2, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
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
    # A worker of `serve --workers` starts with SIGHUP blocked (cli/workers.py): one that came
    # meanwhile is delivered now, to the handler above.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    bound = runner.addresses[0][1] if runner.addresses else port
    event_loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # "uvloop" or "asyncio"
    LOG.info("listening", extra={"host": host, "port": bound, "event_loop": event_loop, "pid": os.getpid()})
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
        config = with_workers(load(args.config, args.env), args.workers)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if config.server.workers > 1 and args.worker_index is None:
        return run_workers(args, config)  # the parent: starts the workers, serves nothing itself
    if args.worker_index is not None and not follow_parent():
        print("error: the parent of this worker (serve --workers) is gone; not starting", file=sys.stderr)
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
        reloader = Reloader(args.config, args.env, workers=args.workers)
        reloader.attach(app)
        worker = args.worker_index is not None  # one of `serve --workers N`: the port is shared
        with loop.runner(config.server.event_loop) as runner:
            runner.run(serve_app(app, host, port, config.server.shutdown_grace_s, reloader=reloader, reuse_port=worker))
    except OSError as exc:  # e.g. the port is taken: a message, not a traceback
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        stop_logging(listener)  # after the app's cleanup: flushes every queued log line
    return 0
