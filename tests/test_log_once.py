"""Each access line is written once: to the log file when one is set (stdout keeps the other
lines), to stdout otherwise; with several writer processes sharing the file, no line tears.
Lines logged on an event loop reach the writer thread in batches, and none is lost on stop."""

from __future__ import annotations

import asyncio
import io
import logging
import multiprocessing
import select
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gemini_proxy.observe import accesslog
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


def test_lines_logged_on_the_loop_are_written_by_the_batch_timer_in_order(restore_loggers: None) -> None:
    out = io.StringIO()
    listener = setup_logging(stream=out)

    async def serve() -> list[str]:
        for i in range(5):
            log_access({"request_id": f"req_{i}", "status_code": 200})
        for _ in range(400):  # the batch's timer hands them over; the writer thread writes them
            if len(out.getvalue().splitlines()) == 5:
                break
            await asyncio.sleep(0.005)
        return [orjson.loads(line)["request_id"] for line in out.getvalue().splitlines()]

    try:
        assert asyncio.run(serve()) == [f"req_{i}" for i in range(5)]
    finally:
        stop_logging(listener)


def test_stopping_writes_the_lines_still_waiting_for_their_batch(restore_loggers: None) -> None:
    out = io.StringIO()
    listener = setup_logging(stream=out)

    async def serve() -> None:
        for i in range(3):
            log_access({"request_id": f"req_{i}", "status_code": 200})

    asyncio.run(serve())  # the loop is gone before the batch's timer fires
    stop_logging(listener)
    assert [orjson.loads(line)["request_id"] for line in out.getvalue().splitlines()] == ["req_0", "req_1", "req_2"]


def test_a_batch_goes_to_a_pipe_in_writes_of_whole_lines_within_pipe_buf() -> None:
    lines = ["a" * 1500, "b" * 1500, "c" * 1500, "d" * 9000, "e" * 10]
    chunks = list(accesslog._pipe_sized(lines))
    assert b"".join(chunks).decode().splitlines() == lines
    assert all(chunk.endswith(b"\n") for chunk in chunks)
    assert [len(c) for c in chunks if len(c) > select.PIPE_BUF] == [9001]  # only a line longer than PIPE_BUF, alone
    assert len(chunks) == 4  # a+b, c, d, e


def _writer(path: str, worker: int, n: int) -> None:
    listener = setup_logging(stream=io.StringIO(), file=path)
    pad = "x" * (6000 + worker)  # longer than a pipe's atomic size and than a text buffer's 8 KiB once escaped

    async def serve() -> None:  # on a loop, as served: the lines go in batches
        for i in range(n):
            log_access({"request_id": f"req_{worker}_{i}", "pad": pad * 2})
            if i % 7 == 0:
                await asyncio.sleep(0.001)

    asyncio.run(serve())
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
