"""Each access line is written once: to the log file when one is set (stdout keeps the other
lines), to stdout otherwise; with several writer processes sharing the file, no line tears."""

from __future__ import annotations

import io
import logging
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gemini_proxy.observe.accesslog import ACCESS, LOG, log_access, setup_logging, stop_logging


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    yield
    for logger in (ACCESS, LOG):
        logger.handlers, logger.propagate = [], True
        logger.setLevel(logging.NOTSET)


def test_with_a_log_file_access_lines_go_to_the_file_only(tmp_path: Path, restore_loggers: None) -> None:
    path, out = tmp_path / "proxy.log", io.StringIO()
    listener = setup_logging(stream=out, file=str(path))
    log_access({"request_id": "req_1", "status_code": 200})
    LOG.info("listening", extra={"port": 1})
    stop_logging(listener)
    in_file = [orjson.loads(line) for line in path.read_text().splitlines()]
    on_stdout = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in in_file] == ["request", "listening"]
    assert [line["message"] for line in on_stdout] == ["listening"]  # start-up lines still show on stdout


def test_without_a_log_file_access_lines_go_to_stdout(restore_loggers: None) -> None:
    out = io.StringIO()
    listener = setup_logging(stream=out)
    log_access({"request_id": "req_1", "status_code": 200})
    stop_logging(listener)
    [line] = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert line["request_id"] == "req_1"


def _writer(path: str, worker: int, n: int) -> None:
    listener = setup_logging(stream=io.StringIO(), file=path)
    pad = "x" * (6000 + worker)  # longer than a pipe's atomic size and than a text buffer's 8 KiB once escaped
    for i in range(n):
        log_access({"request_id": f"req_{worker}_{i}", "pad": pad * 2})
    stop_logging(listener)


def test_processes_appending_to_one_file_never_tear_a_line(tmp_path: Path) -> None:
    path, n = str(tmp_path / "shared.log"), 200
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = sorted(orjson.loads(line)["request_id"] for line in Path(path).read_text().splitlines())
    assert ids == sorted(f"req_{w}_{i}" for w in range(3) for i in range(n))
