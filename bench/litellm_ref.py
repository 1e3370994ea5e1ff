"""The alternative: the LiteLLM proxy, in its own throwaway virtual environment, on loopback only.

``bench.run`` installs ``litellm[proxy]`` (pinned below) into ``bench/.litellm-venv`` (git-ignored)
the first time it is asked for a ``litellm-*`` target, then starts ``litellm --config`` with one
worker and no database, pinned to core 0 like the proxy under test. It is never a dependency of
the project and never imported by it.

Pinned version: the newest release whose ``[proxy]`` extra resolves from the package index here
(1.108+ and 1.109+ require ``litellm-proxy-extras`` builds that are not published there, 1.110
requires a ``litellm-proxy`` package that is not either); 1.82.7, 1.82.8 and 1.107.0 are never used.

Same upstreams as the proxy: ``openai/`` passthrough to the fake's ``/v1`` and the ``gemini/``
provider (Google AI Studio) with ``api_base`` on the fake: LiteLLM builds
``{api_base}/models/{model}:{endpoint}`` for it (``llms/vertex_ai/vertex_llm_base.py``,
``_check_custom_proxy``), so native translation is measured too. Everything LiteLLM could fetch
at start or run time (the model cost map, policy templates, autorouter presets, Anthropic beta
headers, the blog feed) is either forced local by its own switch or pointed at a closed
loopback port, and an HTTPS proxy on a closed loopback port catches anything else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import stack

VERSION = "1.106.12"
VENV = Path(__file__).resolve().parent / ".litellm-venv"
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, a fetch fails at once, locally

ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_MODEL_COST_MAP_URL": NOWHERE,
    "LITELLM_ANTHROPIC_BETA_HEADERS_URL": NOWHERE,
    "LITELLM_AUTOROUTER_PRESETS_URL": NOWHERE,
    "LITELLM_BLOG_POSTS_URL": NOWHERE,
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    "LITELLM_MODE": "PRODUCTION",  # do not read a .env file
    "LITELLM_LOG": "ERROR",
    "HTTPS_PROXY": NOWHERE,
    "https_proxy": NOWHERE,
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# No database: LiteLLM then keeps no virtual keys and no spend logs (the lightest proxy it can be).
UNSET = ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL")


def binary() -> Path:
    return VENV / "bin" / "litellm"


def ensure_installed(log: Path | None = None) -> str | None:
    """Install the pinned LiteLLM into its own venv unless it is there; None, or why it failed."""
    python = VENV / "bin" / "python"
    if binary().exists() and _installed_version(python) == VERSION:
        return None
    print(f"installing litellm[proxy]=={VERSION} into {VENV} (once)...", file=sys.stderr, flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=120)
        out = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"litellm[proxy]=={VERSION}"],
            capture_output=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create {VENV}: {exc}"
    if out.returncode != 0:
        tail = [line for line in out.stderr.decode(errors="replace").splitlines() if "ERROR" in line]
        return f"pip install litellm[proxy]=={VERSION} failed: " + (" | ".join(tail[-3:]) or "see pip output")
    return None


def _installed_version(python: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode().strip() or None


def config(path: Path, fake_url: str) -> Path:
    """The equivalent of bench-routing.toml: same two models, same fake, key from the same env var."""
    path.write_text(
        f"""
model_list:
  - model_name: bench-passthrough
    litellm_params:
      model: openai/gemini-2.5-flash
      api_base: {fake_url}/v1
      api_key: os.environ/{stack.KEY_ENV}
  - model_name: bench-gemini
    litellm_params:
      model: gemini/gemini-2.5-flash
      api_base: {fake_url}/v1beta
      api_key: os.environ/{stack.KEY_ENV}
litellm_settings:
  telemetry: false
  set_verbose: false
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  # No client auth, as the proxy's bench config has no teams (this loopback run is the only use).
  dangerously_permit_weak_or_unset_master_key: true
  disable_spend_logs: true
  disable_reset_budget: true
  disable_adding_master_key_hash_to_db: true
""",
        encoding="utf-8",
    )
    return path


def start(tmp: Path, fake_url: str, runs: int) -> tuple[stack.Proc, list[float]]:
    """Start LiteLLM ``runs`` times (start-up time to the first 200 from its liveness probe); keep the last."""
    port = stack.free_port()
    cfg = config(tmp / "litellm.yaml", fake_url)
    argv = [str(binary()), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    env = {k: v for k, v in os.environ.items() if k not in UNSET} | ENV | {stack.KEY_ENV: stack.KEY}
    times = []
    proc = None
    for i in range(runs):
        start_t = time.perf_counter()
        out = open(tmp / f"litellm-{i}.log", "wb")
        popen = subprocess.Popen(
            stack.pinned(0, argv), cwd=tmp, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        proc = stack.Proc("litellm", popen, port)
        _wait_up(proc, tmp / f"litellm-{i}.log")
        times.append(time.perf_counter() - start_t)
        if i < runs - 1:
            proc.stop()
    assert proc is not None
    return proc, times


def _wait_up(proc: stack.Proc, log: Path, timeout_s: float = 120.0) -> None:
    """Until LiteLLM's liveness probe answers; fail at once (with its last words) if it exits."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if proc.popen.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError("litellm exited at start-up: " + " | ".join(tail))
        try:
            stack.wait_http(f"http://127.0.0.1:{proc.port}/health/liveliness", timeout_s=0.5, interval_s=0.01)
            return
        except RuntimeError:
            continue
    raise RuntimeError(f"litellm did not answer within {timeout_s:g}s")
