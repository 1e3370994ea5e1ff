"""SSE splitting: any chunking of the same bytes yields the same events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from gemini_proxy.adapters import sse
from gemini_proxy.adapters.sse import events


class _Content:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def iter_any(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


class _Resp:
    def __init__(self, pieces: list[bytes]) -> None:
        self.content = _Content(pieces)


def parse(pieces: list[bytes]) -> list[bytes]:
    async def run() -> list[bytes]:
        return [e async for e in events(_Resp(pieces))]

    return asyncio.run(run())


STREAM = (
    b": keep-alive comment\r\n\r\n"
    b'data: {"a":1}\r\n\r\n'
    b"event: message\nid: 7\ndata: line one\ndata: line two\n\n"
    b"data:no-space\n\n"
    b"data\n\n"
    b'data: {"b":2}\n\n'
    b"data: [DONE]\n\n"
)
EXPECTED = [b'{"a":1}', b"line one\nline two", b"no-space", b"", b'{"b":2}', b"[DONE]"]


def test_whole_stream_in_one_chunk() -> None:
    assert parse([STREAM]) == EXPECTED


def test_one_byte_at_a_time_including_between_cr_and_lf() -> None:
    assert parse([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert parse(pieces) == EXPECTED


def test_event_over_64_kib_survives() -> None:
    big = b"x" * (300 * 1024)
    raw = b"data: " + big + b"\r\n\r\n"
    assert parse([raw[i : i + 4096] for i in range(0, len(raw), 4096)]) == [big]


def test_last_event_without_blank_line_is_not_lost() -> None:
    assert parse([b'data: {"a":1}\n\ndata: {"b":2}']) == [b'{"a":1}', b'{"b":2}']
    assert parse([b'data: {"a":1}\r\n']) == [b'{"a":1}']


def test_empty_body_has_no_events() -> None:
    assert parse([]) == [] and parse([b"\n\n: comment\n"]) == []


def test_events_completed_by_one_read_come_as_one_batch() -> None:
    from gemini_proxy.adapters.sse import batches

    async def run(pieces: list[bytes]) -> list[list[bytes]]:
        return [b async for b in batches(_Resp(pieces))]

    # One read with three events: one batch (one write to the client); a split event waits for its end.
    pieces = [b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4", b"\n\n", b"data: 5\n\n"]
    assert asyncio.run(run(pieces)) == [[b"1", b"2", b"3"], [b"4"], [b"5"]]


def test_a_multi_line_event_keeps_data_on_every_line_when_framed_again() -> None:
    assert sse.frame(b'{"a":\n1}') == b'data: {"a":\ndata: 1}\n\n'
    assert sse.frame(b"[DONE]") == b"data: [DONE]\n\n"


def test_the_splitter_returns_what_each_read_completed_and_the_rest_on_close() -> None:
    split = sse.Splitter()
    assert split.feed(b"data: 1\r") == []  # a boundary between CR and LF
    assert split.feed(b"\n\r\ndata: 2\n") == [b"1"]
    assert split.feed(b"data: more\n\ndata: 3") == [b"2\nmore"]  # a multi-line event, joined by \n
    assert split.close() == [b"3"]  # the last event without its blank line is not lost
    assert split.close() == []
