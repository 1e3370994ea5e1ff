"""A pytest plugin that proves no made-up key ever leaves the proxy during the whole test run.

It watches three outlets for the entire session, whatever each test does with logging:

- every access-log line the proxy builds (``Telemetry.emit``'s return value: the line is
  recorded even when the test did not enable the access logger);
- every log record any logger actually handles (warnings, errors with their traceback text);
- every response body the proxy's own apps send (error bodies, streams, ``/metrics``): the
  low-level ``StreamWriter`` is wrapped, and only writes for an app holding the proxy's
  ``RUNTIME`` are kept, so the fake upstreams may echo keys back (as redaction tests need).

Tests that run the proxy in a subprocess hand their log file to :func:`observe`. At the end of
the session every captured text is searched for every test key (each literal in tests/ that
contains ``not-real``, plus the known client keys); a hit fails the run and names the key and
where it was seen. ``tests/test_no_secrets.py`` proves the detector does flag a leak.
"""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import http_writer, web_protocol

_TESTS = Path(__file__).resolve().parent
# Client keys the tests send that do not follow the "not-real" naming.
_CLIENT_KEYS = ("client-key-unused", "made-up-client-key", "not-a-team-key", "made-up-literal-key-123", "adc-token-1")
_LITERAL = re.compile(r"""["']([A-Za-z0-9_.-]*not-real[A-Za-z0-9_.-]*)["']""")


def test_keys(root: Path = _TESTS) -> frozenset[str]:
    """Every made-up key in the test sources (they all contain 'not-real'), and the client keys."""
    found = set(_CLIENT_KEYS)
    for path in root.rglob("*.py"):
        found.update(m for m in _LITERAL.findall(path.read_text(encoding="utf-8")) if len(m) >= 12)
    return frozenset(found)


test_keys.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class Capture:
    """What the proxy said, as (where, text) pairs, and the search over it."""

    seen: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"log": 0, "access": 0, "body": 0})
    paused: bool = False  # while a deliberate leak is captured privately

    def add(self, where: str, text: str) -> None:
        if self.paused:
            return
        self.seen.append((where, text))
        self.counts[where.split(":", 1)[0]] = self.counts.get(where.split(":", 1)[0], 0) + 1

    def leaks(self, keys: Iterable[str]) -> list[tuple[str, str, str]]:
        """(key, where, excerpt) for every captured text that contains a key."""
        out = []
        for where, text in self.seen:
            for key in keys:
                at = text.find(key)
                if at >= 0:
                    out.append((key, where, text[max(0, at - 80) : at + len(key) + 40]))
        return out


CAPTURE = Capture()


def observe(where: str, text: str) -> None:
    """Hand the plugin output it cannot see itself (a subprocess's log file)."""
    CAPTURE.add(where, text)


def _is_proxy(writer: http_writer.StreamWriter) -> bool:
    from gemini_proxy.http.appkeys import RUNTIME

    protocol = writer.protocol
    if not isinstance(protocol, web_protocol.RequestHandler):
        return False  # a client request (the proxy calling a fake, or a test calling the proxy)
    app = getattr(getattr(protocol, "_request_handler", None), "__self__", None)
    return app is not None and hasattr(app, "get") and RUNTIME in app


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr({k: v for k, v in record.__dict__.items() if k not in ("msg", "args")})]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    return "\n".join(parts)


def install(capture: Capture) -> Callable[[], None]:
    """Wrap the three outlets; returns the function that unwraps them."""
    from gemini_proxy.observe.telemetry import Telemetry

    original_handle = logging.Logger.handle
    original_emit = Telemetry.emit
    original_write = http_writer.StreamWriter.write
    original_eof = http_writer.StreamWriter.write_eof

    def handle(self: logging.Logger, record: logging.LogRecord) -> None:
        if not self.name.startswith("aiohttp.access"):
            capture.add(f"log:{self.name}", _record_text(record))
        original_handle(self, record)

    def emit(self: Telemetry, record: Any, config: Any) -> dict[str, Any]:
        line = original_emit(self, record, config)
        capture.add("access", repr(line))
        return line

    async def write(self: http_writer.StreamWriter, chunk: Any, *args: Any, **kw: Any) -> None:
        if chunk and _is_proxy(self):
            capture.add("body", bytes(chunk).decode("utf-8", "replace"))
        await original_write(self, chunk, *args, **kw)

    async def write_eof(self: http_writer.StreamWriter, chunk: bytes = b"") -> None:
        if chunk and _is_proxy(self):
            capture.add("body", bytes(chunk).decode("utf-8", "replace"))
        await original_eof(self, chunk)

    logging.Logger.handle = handle  # type: ignore[method-assign]
    Telemetry.emit = emit  # type: ignore[method-assign]
    http_writer.StreamWriter.write = write  # type: ignore[method-assign]
    http_writer.StreamWriter.write_eof = write_eof  # type: ignore[method-assign]

    def uninstall() -> None:
        logging.Logger.handle = original_handle  # type: ignore[method-assign]
        Telemetry.emit = original_emit  # type: ignore[method-assign]
        http_writer.StreamWriter.write = original_write  # type: ignore[method-assign]
        http_writer.StreamWriter.write_eof = original_eof  # type: ignore[method-assign]

    return uninstall


_uninstall: list[Callable[[], None]] = []


def activate() -> None:
    """Install the session capture once (called when tests/conftest.py is imported, before any test)."""
    if not _uninstall:
        _uninstall.append(install(CAPTURE))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    while _uninstall:
        _uninstall.pop()()
    leaks = CAPTURE.leaks(test_keys())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    summary = f"secret scan: {sum(CAPTURE.counts.values())} outputs checked {CAPTURE.counts}, {len(leaks)} leaks"
    if reporter is not None:
        reporter.write_line(summary)
        for key, where, excerpt in leaks[:20]:
            reporter.write_line(f"  LEAK of {key!r} in {where}: ...{excerpt}...", red=True)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@contextlib.contextmanager
def scoped(capture: Capture) -> Iterator[Capture]:
    """For the detector's own test: a private capture installed on top of the session one."""
    undo = install(capture)
    CAPTURE.paused = True
    try:
        yield capture
    finally:
        CAPTURE.paused = False
        undo()
