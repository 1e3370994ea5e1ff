"""``serve --workers N``: N processes on one port, one config, one log, one /metrics view.

Python runs one request at a time per process, so one proxy process tops out at one core. The
parent started by ``serve --workers N`` serves nothing itself: it starts N copies of
``serve`` (``--worker-index i``), each binding the same host and port with ``SO_REUSEPORT``,
so the kernel spreads new connections over their listeners. Why processes started with
``subprocess`` and not ``fork``: each worker builds its own event loop, sessions and threads from
scratch, as a single ``serve`` does, with nothing half-inherited from the parent.

- Config: every worker reads the same file (and ``--env``); ``serve --workers N`` sets
  ``[server] workers`` for all of them, so each knows its share of the limits
  (``Config.local_shares``: without Redis, each worker enforces 1/N of every limit and budget).
- Log: every line is one ``O_APPEND`` write (gemini_proxy/observe/accesslog.py), so the workers
  share the log file and stdout without tearing lines.
- /metrics: the workers write their counters and histograms to files in one directory
  (prometheus_client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``); whichever worker
  answers a scrape sums them all. Live gauges (lanes, key pools) are that worker's own.
- Signals: SIGHUP is passed to every worker (each reloads); SIGTERM and SIGINT are passed on
  and the parent waits for every worker to drain (``shutdown_grace_s``), then exits. A worker
  that dies on its own is started again (after a second if it died within a second of start);
  one whose first process fails at start (the port taken, say), or that dies right after each of
  5 starts in a row, stops the server with exit 1.
- A parent that is killed outright (SIGKILL, the OOM killer) cannot pass anything on: each worker
  asks Linux for a SIGTERM when its parent dies (``PR_SET_PDEATHSIG``, :func:`follow_parent`),
  so it drains and exits instead of serving on, unsupervised, beside the next server started.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from gemini_proxy.config import Config
from gemini_proxy.observe.accesslog import LOG, setup_logging, stop_logging

_RESPAWN_PAUSE_S = 1.0  # a worker that keeps crashing is retried once a second, not in a busy loop
# A worker's first process that exits with an error this soon failed to start (port taken, bad key file...):
# every restart would fail the same way, so the whole server stops with an error instead.
_START_FAILURE_S = 15.0
# A worker that dies this many times in a row, each within _START_FAILURE_S of its start, stops the server.
_CRASH_LOOP = 5
# The parent's pid, handed to each worker: a worker whose parent is already gone stops at once.
SUPERVISOR_ENV = "GEMINI_PROXY_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def follow_parent() -> bool:
    """In a worker: have the kernel send SIGTERM when the parent dies; False if it already has.

    Outside Linux (no ``prctl``) a worker is not told, and the parent's SIGTERM remains the way
    to stop it; returns True there.
    """
    expected = os.environ.get(SUPERVISOR_ENV)
    if not expected or not sys.platform.startswith("linux"):
        return True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return True
    return str(os.getppid()) == expected  # the parent may have died before prctl took effect


def worker_argv(args: argparse.Namespace, workers: int, index: int, port: int) -> list[str]:
    argv = [sys.executable, "-m", "gemini_proxy", "serve", "--config", str(args.config), "--port", str(port)]
    argv += ["--workers", str(workers), "--worker-index", str(index)]
    for flag, value in (("--env", args.env), ("--host", args.host), ("--log-file", args.log_file)):
        if value:
            argv += [flag, value]
    return argv


class Supervisor:
    """Starts the workers, passes signals on, restarts a worker that died, waits for all on stop."""

    def __init__(self, args: argparse.Namespace, config: Config, port: int, metrics_dir: str) -> None:
        self.args, self.workers, self.port = args, config.server.workers, port
        self.env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, SUPERVISOR_ENV: str(os.getpid())}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # worker index -> process
        self.started: dict[int, float] = {}
        self.restarts: dict[int, int] = {}
        self.quick_deaths: dict[int, int] = {}  # deaths in a row within _START_FAILURE_S of a start
        self.stopping = False

    def start(self, index: int) -> None:
        # The worker starts with SIGHUP blocked (a blocked mask is inherited through exec) and
        # unblocks it once its event loop handles it (serve.py): a reload signal that comes while
        # it imports and loads waits for it, instead of killing it (the default action).
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc = subprocess.Popen(worker_argv(self.args, self.workers, index, self.port), env=self.env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        self.procs[index], self.started[index] = proc, time.monotonic()
        self.restarts[index] = self.restarts.get(index, -1) + 1
        LOG.info("worker started", extra={"worker": index, "pid": proc.pid})
        if self.stopping:  # a SIGTERM/SIGINT that came while Popen ran was passed on before proc was listed
            _signal(proc, signal.SIGTERM)

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
        for proc in self.procs.values():
            _signal(proc, signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.forward)
        for index in range(self.workers):
            if self.stopping:  # told to stop while starting them: the rest are not started
                break
            self.start(index)
        failed = 0
        while self.procs:
            pid, status = os.wait()  # a signal runs forward() and the wait resumes (PEP 475)
            found = [i for i, p in self.procs.items() if p.pid == pid]
            if not found:
                continue
            index = found[0]
            proc = self.procs.pop(index)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if self.stopping:  # told to stop: killed by that signal before its handler was set is a stop too
                failed |= proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)
                continue
            lived = time.monotonic() - self.started[index]
            # Exiting with an error soon after the first start is a worker that cannot start; one
            # killed by a signal (the OOM killer, an operator's kill -9) is restarted, however soon,
            # unless it keeps dying right after each start (a crash loop is an error, not a service).
            self.quick_deaths[index] = self.quick_deaths.get(index, 0) + 1 if lived < _START_FAILURE_S else 0
            start_failed = self.restarts[index] == 0 and proc.returncode > 0 and lived < _START_FAILURE_S
            if start_failed or self.quick_deaths[index] >= _CRASH_LOOP:
                why = "failed to start" if start_failed else f"died {_CRASH_LOOP} times in a row right after starting"
                extra = {"worker": index, "exit_code": proc.returncode}
                LOG.error("worker %s; stopping every worker", why, extra=extra)
                failed = True
                self.forward(signal.SIGTERM, None)
                continue
            LOG.warning("worker exited, starting it again", extra={"worker": index, "exit_code": proc.returncode})
            if lived < _RESPAWN_PAUSE_S:
                time.sleep(_RESPAWN_PAUSE_S)
            if not self.stopping:
                self.start(index)
        LOG.info("all workers stopped", extra={"workers": self.workers})
        return 1 if failed else 0


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Pass a signal on to a worker that :meth:`Supervisor.run` has not reaped.

    Not ``Popen.send_signal``: it polls first, and a poll from a signal handler would reap a
    worker that just died, which ``run()``'s ``os.wait()`` then never sees (never restarted).
    Until ``run()`` reaps it, a dead worker's pid is a zombie's and cannot be reused.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)


def per_process_state(config: Config) -> str | None:
    """What users would see break at random with several workers and no shared state, or None.

    Each worker has its own memory: a stored Responses API answer lives in the worker that made
    it, so ``previous_response_id`` and ``GET /v1/responses/{id}`` miss whenever the kernel hands
    the next connection to another worker. Said at start and by ``check``, never silently."""
    if config.server.workers <= 1 or config.state.backend != "memory":
        return None
    return (
        f'workers={config.server.workers} without [state] backend = "redis": each worker keeps its own '
        "Responses API store (previous_response_id and GET /v1/responses/{id} find an answer only on the "
        "worker that stored it), exact response cache and Gemini context caches; use Redis for "
        "/v1/responses with store=true, or one worker"
    )


def run_workers(args: argparse.Namespace, config: Config) -> int:
    """The parent of ``serve --workers N`` (N > 1): returns when every worker has stopped."""
    port = args.port if args.port is not None else config.server.port
    if port == 0:
        print("error: --workers needs a fixed port (with port 0 each worker would get its own)", file=sys.stderr)
        return 1
    listener = setup_logging(file=args.log_file or config.logging.file)
    if (note := per_process_state(config)) is not None:
        LOG.warning("%s", note)
    try:
        with tempfile.TemporaryDirectory(prefix="gemini-proxy-metrics-") as metrics_dir:
            return Supervisor(args, config, port, metrics_dir).run()
    finally:
        stop_logging(listener)
