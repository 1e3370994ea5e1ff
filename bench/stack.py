"""Start and stop the processes under test: the fake upstream, the bare relay, the proxy.

Each runs in its own process, pinned with ``taskset``: what is measured on core 0, the load
generator and the fake on core 1, so the two sides never steal each other's CPU.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "BENCH_UPSTREAM_KEY"
KEY = "bench-upstream-key-not-real-0001"  # made up: the fake never checks it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# On a shared machine other work competes for the two cores; as root the benchmark raises its own
# processes' priority (NICE) so that work disturbs the measurement less. Ignored when not root.
NICE = -10


def pinned(core: int | None, argv: list[str]) -> list[str]:
    """Prefix ``taskset -c CORE`` when pinning is possible (two cores and taskset present)."""
    if os.geteuid() == 0 and shutil.which("nice"):
        argv = ["nice", "-n", str(NICE), *argv]
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", str(core), *argv]


def can_pin() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def wait_http(url: str, timeout_s: float = 10.0, interval_s: float = 0.002) -> float:
    """Poll ``url`` until it answers 200; return the seconds it took. Raise after ``timeout_s``."""
    start = time.perf_counter()
    deadline = start + timeout_s
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(interval_s)
    raise RuntimeError(f"{url} did not answer within {timeout_s:g}s")


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s:g}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


def spawn(
    name: str, argv: list[str], core: int | None, port: int, log: Path, env: dict[str, str] | None = None
) -> Proc:
    """Start ``python -m ...`` from the repository root (so this checkout's code is imported)."""
    out = open(log, "wb")
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(
        pinned(core, [sys.executable, *argv]), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=full_env
    )
    return Proc(name, popen, port)


def proxy_config(path: Path, port: int, fake_url: str, event_loop: str = "auto", extra: str = "") -> Path:
    """A routing.toml with one Gemini and one OpenAI-compatible upstream, both on the fake (+ ``extra`` TOML)."""
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
event_loop = "{event_loop}"

[upstreams.fakegemini]
kind = "gemini"
base_url = "{fake_url}"
api_key_env = "{KEY_ENV}"
timeout_s = 30

[upstreams.fakegateway]
kind = "openai"
base_url = "{fake_url}/v1"
api_key_env = "{KEY_ENV}"
timeout_s = 30

[models.bench-gemini]
target = "fakegemini:gemini-2.5-flash"

[models.bench-passthrough]
target = "fakegateway:gemini-2.5-flash"
"""
        + extra,
        encoding="utf-8",
    )
    return path


# Limits high enough never to refuse: what is measured is their bookkeeping, not their waiting.
LIMITS_TOML = """
[limits.fakegemini]
rpm = 100000000
tpm = 100000000000
rpd = 100000000

[limits.fakegateway]
rpm = 100000000
tpm = 100000000000
rpd = 100000000
"""


def redis_state_toml(url: str, prefix: str) -> str:
    """``[state] backend = "redis"`` under a prefix of this run's own (deleted afterwards)."""
    return f'\n[state]\nbackend = "redis"\nurl = "{url}"\nkey_prefix = "{prefix}"\non_state_error = "reject"\n'


def start_fake(tmp: Path) -> Proc:
    port = free_port()
    proc = spawn("fake", ["-m", "bench.fake", "--port", str(port)], 1, port, tmp / "fake.log")
    wait_port(port)
    return proc


def resolved_loop(choice: str) -> str:
    """The loop the proxy runs on for ``[server] event_loop = choice`` (see gemini_proxy/cli/loop.py)."""
    from gemini_proxy.cli import loop

    return "uvloop" if choice == "uvloop" or (choice == "auto" and loop.uvloop_available()) else "asyncio"


def start_relay(tmp: Path, fake_url: str, event_loop: str = "auto") -> Proc:
    port = free_port()
    argv = ["-m", "bench.relay", "--port", str(port), "--upstream", fake_url, "--event-loop", resolved_loop(event_loop)]
    proc = spawn("relay", argv, 0, port, tmp / "relay.log")
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc


def start_gateway_floor(tmp: Path, fake_url: str, event_loop: str = "auto") -> Proc:
    """bench/floor_gateway.py in its own process, on the proxy's core and loop, as the relay."""
    port = free_port()
    argv = ["-m", "bench.floor_gateway", "--port", str(port), "--upstream", fake_url, "--event-loop"]
    proc = spawn("gateway-floor", [*argv, resolved_loop(event_loop)], 0, port, tmp / "gateway-floor.log")
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return proc


def start_proxy(
    tmp: Path, fake_url: str, runs: int, event_loop: str = "auto", extra: str = "", name: str = "proxy"
) -> tuple[Proc, list[float]]:
    """Start the proxy ``runs`` times, timing process start to first 200 from /healthz; keep the last."""
    port = free_port()
    file = "bench-routing.toml" if name == "proxy" else f"bench-routing-{name}.toml"
    config = proxy_config(tmp / file, port, fake_url, event_loop, extra)
    argv = ["-m", "gemini_proxy", "serve", "--config", str(config), "--port", str(port)]
    times = []
    proc = None
    for i in range(runs):
        start = time.perf_counter()
        proc = spawn(name, argv, 0, port, tmp / f"{name}-{i}.log", env={KEY_ENV: KEY})
        wait_http(f"http://127.0.0.1:{port}/healthz", interval_s=0.001)
        times.append(time.perf_counter() - start)
        if i < runs - 1:
            proc.stop()
    assert proc is not None
    return proc, times


def other_load(pids: list[int], sample_s: float = 0.3) -> float:
    """Busy share of the two cores (0..2) used by processes other than ``pids``, over ``sample_s``."""
    cores0, ours0 = procstat.core_busy_seconds(), sum(_cpu(p) for p in pids)
    time.sleep(sample_s)
    cores1, ours1 = procstat.core_busy_seconds(), sum(_cpu(p) for p in pids)
    busy = sum(cores1[c] - cores0[c] for c in ("cpu0", "cpu1") if c in cores0)
    return max(0.0, busy - (ours1 - ours0)) / sample_s


def wait_quiet(pids: list[int], below: float, max_wait_s: float) -> float:
    """Wait up to ``max_wait_s`` for other work on the machine to drop below ``below``; return the last reading."""
    deadline = time.perf_counter() + max_wait_s
    load = other_load(pids)
    while load > below and time.perf_counter() < deadline:
        load = other_load(pids)
    return load


def _cpu(pid: int) -> float:
    try:
        return procstat.cpu_seconds(pid)
    except OSError:
        return 0.0
