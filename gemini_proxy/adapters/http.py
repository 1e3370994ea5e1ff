"""The one HTTP transport every adapter uses: the pooled session, timeouts, errors, THE streaming loop.

Why one: the Gemini chat stream, the native Gemini stream and the OpenAI passthrough stream
used to carry three copies of the same loop, and each fix (the events before an error go out
first, a cut stream is "mid-stream", usage kept current) had to land three times. Now
:meth:`HttpTransport.event_batches` owns the status check, the per-read batching of SSE events,
the "started" flag and the conversion of aiohttp's exceptions; each caller hands it an
:class:`EventTranslator` that turns one upstream event into the items to send.

The loop yields *items* (``list[T]`` per upstream read), not bytes: a translator that produces
OpenAI chat chunk dicts (Gemini) can be consumed as dicts by a dialect layer (the Responses API)
without a re-parse, and :func:`joined` frames them as SSE bytes for the chat endpoint.

aiohttp's exceptions are converted to :class:`UpstreamError` here and nowhere else, so the
retry loop sees one type and no message can carry the key (it is redacted on the way out).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol, TypeVar

import aiohttp
import orjson

from gemini_proxy.adapters import sse
from gemini_proxy.adapters.base import Call, StreamState, Upstream, UpstreamError, make_session
from gemini_proxy.adapters.redact import redact

# Error bodies are read for their message only; a huge one is cut rather than buffered.
MAX_ERROR_BODY = 64 * 1024

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# (status, parsed error body or None, upstream name, Retry-After header) -> the kind's error.
ErrorReader = Callable[[int, Any, str, "str | None"], UpstreamError]


class EventTranslator(Protocol[T_co]):
    """Turns one upstream stream into items to send; one instance per stream."""

    # The upstream said the stream is complete (OpenAI's [DONE]): the loop stops reading.
    done: bool

    def feed(self, data: bytes) -> Iterable[T_co]:
        """One SSE ``data:`` payload -> the items it becomes (may be none); raise UpstreamError
        for an error event. Keeps ``StreamState`` current itself (usage, finish reason)."""
        ...

    def end(self, started: bool) -> Iterable[T_co]:
        """The items that close the stream (usage chunk, [DONE]); raise when the stream was
        unusable (e.g. nothing before its end), which before the first byte still fails over."""
        ...


class HttpTransport:
    """One shared client session per upstream, opened lazily, and the calls made over it."""

    def __init__(
        self, upstream: Upstream, read_error: ErrorReader, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.upstream = upstream
        self.read_error = read_error
        self._session = session
        self.complete_timeout = aiohttp.ClientTimeout(total=upstream.timeout_s, connect=upstream.connect_timeout_s)
        # A stream may run long; what must not happen is a silence longer than timeout_s.
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=upstream.connect_timeout_s, sock_read=upstream.timeout_s
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = make_session(self.upstream)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def raise_for(self, resp: aiohttp.ClientResponse, call: Call) -> NoReturn:
        """A non-200 answer as this kind's UpstreamError (its reader knows the body), key redacted."""
        raw = await resp.content.read(MAX_ERROR_BODY)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        err = self.read_error(resp.status, body, self.upstream.name, resp.headers.get("Retry-After"))
        err.message = redact(err.message, (call.api_key or "",))
        raise err

    def wrap(self, exc: BaseException, call: Call, *, mid_stream: bool = False) -> UpstreamError:
        name = self.upstream.name
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamError(504, f"upstream {name} timed out", upstream=name, timeout=True, mid_stream=mid_stream)
        message = redact(f"upstream {name} unreachable: {exc.__class__.__name__}: {exc}", (call.api_key or "",))
        return UpstreamError(502, message, upstream=name, connection=True, mid_stream=mid_stream)

    def invalid(self, what: str) -> UpstreamError:
        return UpstreamError(502, f"upstream {self.upstream.name} returned {what}", upstream=self.upstream.name)

    async def post_json(
        self, call: Call, url: str, payload: bytes, headers: Mapping[str, str]
    ) -> tuple[dict[str, Any], bytes]:
        """One non-stream POST: the parsed JSON object and its raw bytes, or an UpstreamError."""
        if call.trace_headers:
            headers = {**headers, **call.trace_headers}
        try:
            async with self.session.post(url, data=payload, headers=headers, timeout=self.complete_timeout) as resp:
                if resp.status != 200:
                    await self.raise_for(resp, call)
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wrap(exc, call) from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self.invalid("invalid JSON") from None
        if not isinstance(data, dict):
            raise self.invalid("a non-object body")
        return data, raw

    async def event_batches(
        self,
        call: Call,
        url: str,
        payload: bytes,
        headers: Mapping[str, str],
        state: StreamState,
        tr: EventTranslator[T],
    ) -> AsyncIterator[tuple[list[T], bool]]:
        """THE streaming loop: per upstream read, the items its events became, and whether they are the last.

        Before the first item is yielded a failure is an ordinary UpstreamError (the attempt loop
        may retry or fail over); after it, the error is marked ``mid_stream``. Items translated
        before an error (or before a bug of ours) are yielded first, so the client gets them.
        """
        started = False
        if call.trace_headers:
            headers = {**headers, **call.trace_headers}
        try:
            async with self.session.post(url, data=payload, headers=headers, timeout=self.stream_timeout) as resp:
                if resp.status != 200:
                    await self.raise_for(resp, call)
                split = sse.Splitter()
                reads = resp.content.iter_any()
                while True:  # per read, its completed events; at the end, the pending one
                    chunk = await anext(reads, None)
                    batch = split.feed(chunk) if chunk is not None else split.close()
                    if not batch:
                        if chunk is None:
                            break
                        continue
                    out: list[T] = []
                    try:
                        for data in batch:
                            out.extend(tr.feed(data))
                            if tr.done:
                                break
                    except Exception as exc:
                        if isinstance(exc, UpstreamError):
                            exc.mid_stream = started or bool(out)
                            exc.message = redact(exc.message, (call.api_key or "",))
                        if out:
                            state.chunks += len(out)
                            yield out, False
                        raise
                    state.chunks += len(out)
                    started = started or bool(out)
                    if tr.done:
                        yield [*out, *tr.end(started)], True
                        return
                    if out:
                        yield out, False
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self.wrap(exc, call, mid_stream=started) from None
        yield list(tr.end(started)), True


async def joined(batches: AsyncIterator[tuple[list[bytes], bool]]) -> AsyncIterator[bytes]:
    """Byte items (already SSE frames) as one write per upstream read."""
    async for items, _ in batches:
        if items:
            yield b"".join(items)
