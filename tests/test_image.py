"""The Docker image works as documented, checked without a Docker engine.

The image's file tree is assembled from the Dockerfile's own instructions (tests/dockerfile.py):
the build context filtered by .dockerignore, each stage's COPY lines, the package built into a
wheel offline as the build stage's `pip install --no-deps .` does, then `COPY --from`. Each
`docker run` command documented in the Dockerfile's header then runs on that tree: the
entrypoint with the image's WORKDIR as its working directory, mounts copied in, and only the
image's site-packages ahead of the dependencies (`python -S`: the checkout's editable install
is not visible), so a file the image lacks fails here as it would in the container.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from tests.dockerfile import Copy, Stage, apply_copy, context_files, ignore_rules, parse, under

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
STAGES = parse(DOCKERFILE)
SITE = "lib/python3.11/site-packages"
MADE_UP_KEY = "made-up-image-test-key-7"


def _pip_prefix(run: str) -> str:
    match = re.search(r"--prefix[= ](\S+)", run)
    assert match, f"the image installs with --prefix: {run}"
    return match.group(1)


def _build_wheel(stage: Stage, root: Path, run: str, out: Path) -> None:
    """The build stage's `pip install --no-deps ... .`: the wheel, unpacked under its --prefix."""
    src = under(root, stage.workdir)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, f"the build stage cannot build the package from what it copied:\n{built.stderr}"
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(under(root, _pip_prefix(run)) / SITE)


def _run_step(stage: Stage, root: Path, run: str, out: Path) -> None:
    if "-r requirements.lock" in run:
        # The dependencies themselves come from the test venv here; `make wheel-check` installs
        # this very lock with --require-hashes. What the image needs is the file, where RUN looks.
        assert (under(root, stage.workdir) / "requirements.lock").is_file()
    elif "--no-deps" in run and run.rstrip().endswith(" ."):
        _build_wheel(stage, root, run, out)
    elif run.startswith("useradd"):
        assert "--uid 10001" in run
    else:
        raise AssertionError(f"tests/dockerfile.py does not know this RUN step yet: {run}")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The final stage's file tree."""
    work = tmp_path_factory.mktemp("image")
    context = context_files(ROOT, ignore_rules((ROOT / ".dockerignore").read_text(encoding="utf-8")))
    roots: dict[str, Path] = {}
    for i, stage in enumerate(STAGES):
        root = work / f"stage{i}"
        under(root, stage.workdir).mkdir(parents=True, exist_ok=True)
        for step in stage.steps:
            if isinstance(step, Copy):
                if step.from_stage:
                    missing = apply_copy(step, root, roots[step.from_stage], None)
                else:
                    missing = apply_copy(step, root, ROOT, context)
                assert not missing, f"COPY {missing}: not in the build context (.dockerignore?)"
            else:
                _run_step(stage, root, step, work / f"wheel{i}")
        roots[stage.name or str(i)] = root
    return roots[str(len(STAGES) - 1)]


def documented_runs() -> list[list[str]]:
    """The `docker run` commands of the Dockerfile's header comment, as argument lists."""
    header = [line[1:].strip() for line in DOCKERFILE.splitlines() if line.startswith("#")]
    return [shlex.split(line) for line in header if line.startswith("docker run ")]


def _container(argv: list[str], image: Path, tmp: Path) -> tuple[Path, list[str], dict[str, str]]:
    """A copy of the image with the command's mounts, its argv and environment."""
    root = tmp / "root"
    shutil.copytree(image, root, symlinks=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEMINI_API_KEY", "GATEWAY_API_KEY")}
    args = iter(argv[2:])
    rest: list[str] = []
    for token in args:
        if token in ("-v", "-e", "-p"):
            value = next(args)
            if token == "-v":
                host, container = value.split(":")[:2]
                origin = Path(host.replace("$PWD", str(ROOT)))
                target = under(root, container)
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if origin.is_dir() else shutil.copy2)(origin, target)
            elif token == "-e":
                env[value] = MADE_UP_KEY
        elif token.startswith("-"):
            continue  # --rm
        else:
            rest = [token, *args]
    image_name, *command = rest
    assert image_name == "gemini-proxy"
    final = STAGES[-1]
    argv_out = [_host(a, root) for a in (final.entrypoint[1:] + (command or final.cmd))]
    return root, argv_out, env


def _host(arg: str, root: Path) -> str:
    """Paths inside the container live under the assembled root; servers bind loopback, any port."""
    if arg.startswith("/"):
        return str(under(root, arg))
    return {"0.0.0.0": "127.0.0.1", "8080": "0"}.get(arg, arg)


def _python(root: Path, argv: list[str]) -> list[str]:
    """The image's entrypoint (its console script), run by this interpreter on the image's files."""
    entry = STAGES[-1].entrypoint[0]
    (dist,) = (under(root, "/usr/local") / SITE).glob("*.dist-info")
    scripts = (dist / "entry_points.txt").read_text(encoding="utf-8")
    module, func = re.search(rf"^{re.escape(entry)} = ([\w.]+):(\w+)$", scripts, re.M).groups()  # type: ignore[union-attr]
    code = f"import sys; sys.argv[0] = {entry!r}; from {module} import {func}; sys.exit({func}())"
    return [sys.executable, "-S", "-c", code, *argv]


def _environ(root: Path, env: dict[str, str]) -> dict[str, str]:
    deps = sysconfig.get_paths()["purelib"]  # the dependencies (the image has them from the lock)
    return {**env, "PYTHONPATH": os.pathsep.join([str(under(root, "/usr/local") / SITE), deps])}


@contextmanager
def _serving(cmd: list[str], cwd: Path, env: dict[str, str]) -> Iterator[int]:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    try:
        port = None
        for _ in range(300):
            line = proc.stdout.readline()
            seen.append(line)
            match = re.search(r'"port":\s*(\d+)|http://127\.0\.0\.1:(\d+)/v1', line)
            if match or not line:
                port = int(match.group(1) or match.group(2)) if match else None
                break
        assert port, "no port announced:\n" + "".join(seen)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()


def _get(port: int, path: str, body: dict | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_the_header_documents_serve_check_and_demo() -> None:
    commands = {(argv[argv.index("gemini-proxy", 2) + 1 :] or ["serve"])[0] for argv in documented_runs()}
    assert commands == {"serve", "check", "demo"}


def test_every_file_the_bundled_config_names_is_in_the_image(image: Path) -> None:
    example = under(image, "/etc/gemini-proxy/routing.example.toml")
    assert (example.parent / "schemas" / "ticket_triage.json").is_file()
    packaged = list((under(image, "/usr/local") / SITE / "gemini_proxy" / "examples").rglob("*"))
    assert {p.name for p in packaged} >= {"routing.toml", "ticket_triage.json"}


@pytest.mark.parametrize("argv", documented_runs(), ids=lambda argv: " ".join(argv[2:]))
def test_documented_docker_run_works_on_the_image_files(argv: list[str], image: Path, tmp_path: Path) -> None:
    root, args, env = _container(argv, image, tmp_path)
    cwd = under(root, STAGES[-1].workdir)
    cwd.mkdir(parents=True, exist_ok=True)
    cmd, env = _python(root, args), _environ(root, env)
    if args[0] == "check":
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert ": OK" in done.stdout and "ticket_triage" in done.stdout
        return
    with _serving(cmd, cwd, env) as port:
        assert _get(port, "/healthz")[0] == 200
        status, ready = _get(port, "/readyz")
        assert status == 200, ready  # serve got GEMINI_API_KEY (-e), the demo its simulated keys
        status, reply = _get(
            port, "/v1/chat/completions", {"model": "fast", "messages": [{"role": "user", "content": "Hi"}]}
        )
        if args[0] == "demo":
            assert status == 200 and "You said: Hi" in reply["choices"][0]["message"]["content"]
