"""A stream through the attempt loop: retried and failed over until its first chunk exists, then relayed.

The first chunk is fetched inside the loop (:class:`~.attempts.Run`), so a refusal or an
upstream error before it can still move to the next target; after it, the handler relays the
rest and an error ends the stream with an error event (nothing is sent twice). The relayed
iterator is a :class:`GuardedStream`: however the relay ends, closing it frees the lane slot
and settles the TPM estimate with the usage the stream reported.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from gemini_proxy.adapters.base import Call, StreamState, UpstreamError
from gemini_proxy.adapters.interface import Adapter, Operation
from gemini_proxy.resilience.attempts import Run
from gemini_proxy.resilience.job import Job, Resources
from gemini_proxy.resilience.outcome import Outcome


class GuardedStream:
    """The relayed stream; closing it (however the relay ends) frees the lane slot and settles TPM."""

    def __init__(self, agen: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        self._agen, self._on_close, self._closed = agen, on_close, False
        self.error: UpstreamError | None = None  # the upstream broke the stream after its first chunk

    def __aiter__(self) -> GuardedStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._agen.__anext__()
        except UpstreamError as exc:  # the handler ends the stream with an error event; the span says so
            self.error = exc
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._agen.aclose()  # type: ignore[attr-defined]
        finally:
            self._on_close()


async def open_stream(
    rt: Resources, job: Job, op: Operation, outcome: Outcome
) -> tuple[bytes, GuardedStream, StreamState]:
    """Start a stream (``CHAT_STREAM`` or ``NATIVE_STREAM``) and return its first chunk."""
    run = Run(rt, job, op, outcome)
    await run.admit()

    async def one(adapter: Adapter, call: Call) -> tuple[bytes, AsyncIterator[bytes], StreamState]:
        state = StreamState()
        agen = adapter.streaming(job.plan(op, adapter)[0])(call, state)
        try:
            first = await agen.__anext__()
        except StopAsyncIteration:
            raise UpstreamError(502, "upstream ended the stream without data", upstream=adapter.upstream.name) from None
        return first, agen, state

    try:
        target, (first, agen, state) = await run.run(one)
    except BaseException:
        run.release()
        raise
    outcome.first_chunk_at = time.perf_counter()

    def close() -> None:
        run.settle(target, state.usage)
        if run.span is not None:
            run.finish(state.usage, state.finish_reason, guarded.error)
        run.release()

    guarded = GuardedStream(agen, close)
    return first, guarded, state
