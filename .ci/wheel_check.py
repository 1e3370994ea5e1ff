"""CI: the wheel works for a pip user, outside the checkout.

1. Build the wheel from the checkout (pip wheel, build isolation: setuptools from the index).
2. Create a fresh venv in a temporary folder; install requirements.lock with --require-hashes
   (the image's dependencies, hash-checked: a dependency the lock misses fails here), then the
   wheel with --no-deps.
3. From an empty folder (no routing.toml there, no PYTHONPATH), run `gemini-proxy demo --port 0`,
   make one chat completion with the real openai SDK, stop it with SIGTERM and expect exit 0.

Run by `make wheel-check` (and .ci/run). pip's cache is reused, so after the first run nothing
is downloaded again; the whole check takes well under a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"wheel-check: {' '.join(map(str, cmd))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _clean_env() -> dict[str, str]:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "GEMINI_API_KEY", "GATEWAY_API_KEY")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _demo(exe: Path, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [exe, "demo", "--port", "0"], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    try:
        port = None
        for _ in range(300):
            line = proc.stderr.readline()
            if match := re.search(r"http://127\.0\.0\.1:(\d+)/v1", line):
                port = int(match.group(1))
                break
            if not line:
                break
        if port is None:
            sys.exit("wheel-check: the installed demo announced no port")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=30)
        reply = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hello wheel"}])
        text = reply.choices[0].message.content or ""
        if "Hello wheel" not in text:
            sys.exit(f"wheel-check: unexpected demo answer: {text!r}")
        print(f"wheel-check: the installed demo answered: {text!r}")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    if code != 0:
        sys.exit(f"wheel-check: the demo exited {code} on SIGTERM")


def main() -> None:
    start = time.monotonic()
    leftover = not (ROOT / "build").exists()  # setuptools builds in-tree: remove what it leaves
    with tempfile.TemporaryDirectory(prefix="gemini-proxy-wheel-") as tmp:
        work = Path(tmp)
        try:
            _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist", ROOT)
        finally:
            if leftover:
                shutil.rmtree(ROOT / "build", ignore_errors=True)
        (wheel,) = (work / "dist").glob("*.whl")
        env = _clean_env()
        _run(sys.executable, "-m", "venv", work / "venv")
        pip = [work / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run(*pip, "--require-hashes", "-r", ROOT / "requirements.lock", env=env)
        _run(*pip, "--no-deps", wheel, env=env)
        elsewhere = work / "elsewhere"
        elsewhere.mkdir()
        where = _run(
            work / "venv" / "bin" / "python",
            "-c",
            "import gemini_proxy; print(gemini_proxy.__file__)",
            cwd=elsewhere,
            env=env,
        )
        if str(ROOT) in where:
            sys.exit(f"wheel-check: the fresh venv imported the checkout: {where}")
        _demo(work / "venv" / "bin" / "gemini-proxy", elsewhere, env)
    print(f"wheel-check: OK ({wheel.name}, {time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
