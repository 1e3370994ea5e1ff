"""The exact-match response cache: the same request from the same team gets the same answer, free.

Opt-in per alias or task (``[models.NAME.response_cache]``, gemini_proxy/config/caching.py). The rules,
each because a peer got it wrong:

- **Key** = team + route (kind, name, every resolved target) + every field of the body that can
  change the answer (all of them but pure bookkeeping: ``user``, ``metadata``, ``store``,
  ``service_tier``, ``safety_identifier``, ``prompt_cache_key/retention``). ``stream`` and
  ``stream_options`` are part of it: a stream is replayed as a stream, a JSON answer as JSON.
  The team is in the key, so one team never reads another's answers.
- **Only deterministic requests**: ``temperature`` 0. Unset means Gemini's default (1.0), a
  sampled answer, so it is not cached unless the alias sets ``any_temperature = true``.
- **Only complete, useful answers** are stored: status 200, every choice finished with
  ``stop``, with text, and no tool call. Errors, empty, filtered (``content_filter``),
  truncated (``length``) and tool-call answers are never stored.
- **Faithful replay**: a stream is stored chunk for chunk as the client received it (its
  usage chunk and ``[DONE]`` included) and written back the same way; a JSON answer byte for byte.
- **Headers**: ``x-cache: hit`` or ``miss`` on every answer of a caching route. A client's
  ``Cache-Control: no-cache`` skips the lookup (the fresh answer is still stored);
  ``no-store`` stores nothing.
- **Accounting**: a hit's log line says ``cache_hit: true`` and keeps the original tokens, but
  costs 0 (nothing was paid upstream); ``saved_usd`` says what it would have cost.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.base import Completion, Usage
from gemini_proxy.config import Config
from gemini_proxy.config.caching import ResponseCacheConfig
from gemini_proxy.http.answer import JSON, SSE_HEADERS, answer_headers
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.routing.resolve import Route
from gemini_proxy.state.answer_store import AnswerStore

# Body fields that never change the answer (OpenAI documents them as bookkeeping or hints).
BOOKKEEPING = frozenset(
    {"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
)
_VERSION = 1  # bump when the stored shape changes: old entries simply miss


@dataclass(frozen=True, slots=True)
class Plan:
    """What the cache may do for one request of a caching route."""

    cfg: ResponseCacheConfig
    space: str  # the alias/task: the in-memory LRU it counts against
    key: str
    lookup: bool  # may answer from the cache
    store: bool  # may store the fresh answer


_SAMPLING = frozenset({"temperature", "top_p", "frequency_penalty", "presence_penalty"})


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def plan(
    config: Config, route: Route, team: str | None, body: Mapping[str, Any], headers: Mapping[str, str]
) -> Plan | None:
    """None when the route has no response cache; else the entry's key and what the request allows."""
    cfg, _ = config.caching(route.kind, route.name)
    if cfg is None:
        return None
    control = headers.get("Cache-Control", "").lower()
    deterministic = cfg.any_temperature or body.get("temperature") == 0
    # 0 and 0.0 (JavaScript and Python spellings of one value) must find the same entry.
    material = {k: _number(v) if k in _SAMPLING else v for k, v in body.items() if k not in BOOKKEEPING}
    blob = orjson.dumps(
        [_VERSION, team or "", route.kind, route.name, [str(t) for t in route.targets], material],
        option=orjson.OPT_SORT_KEYS,
    )
    key = hashlib.sha256(blob).hexdigest()
    return Plan(
        cfg,
        f"{route.kind}:{route.name}",
        key,
        lookup=deterministic and "no-cache" not in control,
        store=deterministic and "no-store" not in control,
    )


async def lookup(store: AnswerStore, p: Plan | None, record: RequestRecord) -> dict[str, Any] | None:
    if p is None:
        return None
    record.cache = "miss"
    if not p.lookup:
        return None
    raw = await store.get(p.space, p.key)
    if raw is None:
        return None
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) and entry.get("v") == _VERSION else None


async def replay(request: web.Request, record: RequestRecord, entry: dict[str, Any]) -> web.StreamResponse:
    """The stored answer, as it was first sent; the record accounts it as a free hit."""
    record.cache = "hit"
    record.model_used, record.upstream = entry.get("model_used"), entry.get("upstream")
    record.usage = Usage(*entry.get("usage", (0, 0, 0, 0)))
    record.finish_reason = entry.get("finish_reason")
    record.status_code = 200
    if entry.get("kind") == "json":
        body = str(entry["body"]).encode()
        if record.capture_content:  # opted-in content logging sees the replayed answer too
            record.completion = orjson.loads(body)
        return web.Response(body=body, content_type=JSON, headers=answer_headers(record))
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **answer_headers(record)})
    await resp.prepare(request)
    for chunk in entry.get("chunks") or ():
        data = str(chunk).encode()
        record.observe_chunk(data)
        await resp.write(data)
    await resp.write_eof()
    return resp


def _useful(body: dict[str, Any]) -> bool:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or choice.get("finish_reason") != "stop":
            return False
        if message.get("tool_calls") or message.get("function_call"):
            return False
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return False
    return True


def _entry(record: RequestRecord, kind: str, **rest: Any) -> bytes:
    u = record.usage or Usage()
    usage = [u.input_tokens, u.output_tokens, u.cached_tokens, u.thinking_tokens]
    return orjson.dumps(
        {
            "v": _VERSION,
            "kind": kind,
            "model_used": record.model_used,
            "upstream": record.upstream,
            "usage": usage,
            "finish_reason": record.finish_reason,
            **rest,
        }
    )


async def keep_json(store: AnswerStore, p: Plan | None, record: RequestRecord, result: Completion) -> None:
    """Store a fresh JSON answer when it is worth replaying."""
    if p is None or not p.store or record.usage is None or record.usage.estimated or not _useful(result.body):
        return
    raw = result.raw if result.raw is not None else orjson.dumps(result.body)
    await store.put(p.space, p.key, _entry(record, "json", body=raw.decode()), p.cfg.ttl_s, p.cfg.max_entries)


class Recorder:
    """Wraps a relayed stream and keeps a copy of every chunk, for :func:`keep_stream`."""

    def __init__(self, agen: AsyncIterator[bytes]) -> None:
        self._agen = agen
        self.chunks: list[bytes] = []

    def __aiter__(self) -> Recorder:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._agen.__anext__()
        self.chunks.append(chunk)
        return chunk

    async def aclose(self) -> None:
        aclose = getattr(self._agen, "aclose", None)
        if aclose is not None:
            await aclose()


async def keep_stream(store: AnswerStore, p: Plan | None, record: RequestRecord, chunks: list[bytes]) -> None:
    """Store a relayed stream that ended cleanly with an answer (``chunks`` includes the first)."""
    if p is None or not p.store or record.status_code != 200 or record.error_type is not None:
        return
    if record.finish_reason != "stop" or record.answer_chars == 0 or record.usage is None:
        return
    if any(b'"tool_calls"' in c for c in chunks):
        return
    body = [c.decode() for c in chunks]
    await store.put(p.space, p.key, _entry(record, "sse", chunks=body), p.cfg.ttl_s, p.cfg.max_entries)
