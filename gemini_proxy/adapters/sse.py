"""Server-sent events split out of an aiohttp response body, without line-length limits.

aiohttp's line iterator refuses lines over 64 KiB, and a Gemini event carrying an image or a
long tool call can be larger; both transports read raw chunks and split here instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol


class _Content(Protocol):
    def iter_any(self) -> AsyncIterable[bytes]: ...


class _Response(Protocol):
    @property
    def content(self) -> _Content: ...


def _field(line: bytes) -> bytes | None:
    """The value of a ``data`` field line, or None for any other line (comments, event:, id:)."""
    if line.startswith(b"data:"):
        return line[6:] if line[5:6] == b" " else line[5:]
    if line == b"data":  # a field name alone means an empty value (per the spec)
        return b""
    return None


async def events(resp: _Response) -> AsyncIterator[bytes]:
    """Yield the payload of each ``data:`` event as it arrives (see :func:`batches`)."""
    async for batch in batches(resp):
        for data in batch:
            yield data


async def batches(resp: _Response) -> AsyncIterator[list[bytes]]:
    """Yield, per read from the upstream, the payloads of the ``data:`` events it completed
    (see :class:`Splitter`); at the end, what is still pending."""
    split = Splitter()
    async for chunk in resp.content.iter_any():
        done = split.feed(chunk)
        if done:
            yield done
    rest = split.close()
    if rest:
        yield rest


class Splitter:
    """The ``data:`` payloads of an SSE body, fed one read at a time.

    A relay writes what one read completed in one write: one socket write per event was the
    largest cost of a stream (bench profiles), and grouping what already arrived together adds
    no delay. A plain object, not an async generator, so the streaming loop iterates the body
    itself (one generator hop fewer per read). Multi-line data is joined by \\n. Lines end in LF
    or CRLF (Gemini sends CRLF). A chunk boundary may fall anywhere, even between CR and LF. At
    the end of the body, data still pending (a last event without its blank line) is returned
    by :meth:`close` rather than lost: the consumer's JSON parse decides whether it is whole.
    """

    __slots__ = ("_data", "_pending")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # reads since the last line end: a huge event is joined once
        self._data: list[bytes] = []  # the data lines of the event being read

    def feed(self, chunk: bytes) -> list[bytes]:
        """The payloads of the events this read completed (often none, often several)."""
        last = chunk.rfind(b"\n")
        if last < 0:
            self._pending.append(chunk)
            return []
        self._pending.append(chunk[:last])
        lines = b"".join(self._pending).split(b"\n")  # every line this read completed, split in C
        self._pending = [chunk[last + 1 :]]
        data = self._data
        done: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    done.append(b"\n".join(data))
                    data = self._data = []
            elif line.startswith(b"data: "):  # the usual spelling, without the call below
                data.append(line[6:])
            else:
                value = _field(line)
                if value is not None:
                    data.append(value)
        return done

    def close(self) -> list[bytes]:
        """The body ended: the last event, if it came without its blank line."""
        tail = b"".join(self._pending).rstrip(b"\r")
        self._pending = []
        value = _field(tail) if tail else None
        if value is not None:
            self._data.append(value)
        data, self._data = self._data, []
        return [b"\n".join(data)] if data else []


def is_object(data: bytes) -> bool:
    """Does an event's data look like one whole JSON object? A cheap check for a relay that does
    not parse every event: an event cut or garbled mid-JSON is caught before a client parses it."""
    data = data.strip()
    return data[:1] == b"{" and data[-1:] == b"}"


def frame(data: bytes) -> bytes:
    """One event's data as SSE again: every line of a multi-line payload keeps its ``data:``."""
    return b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"
