"""``/v1/files``: OpenAI's Files API, as far as the Batch API needs it (``purpose`` ``batch``).

Upload (multipart ``file`` + ``purpose``, up to ``[batch] max_file_bytes``), retrieve, download
the content, delete. A file belongs to the team whose key uploaded it: another team gets the
same 404 as for a file that does not exist. Output and error files of batches live here too
(``purpose`` ``batch_output``). The bytes are kept under ``[batch] dir`` (gemini_proxy/batch/store.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import BodyPartReader, web

from gemini_proxy.batch.store import public_file
from gemini_proxy.errors import InvalidRequest, NotFound, PayloadTooLarge, ProxyError
from gemini_proxy.http.appkeys import BATCHES, RUNTIME
from gemini_proxy.http.auth import team_of

CHUNK = 1 << 16
T = TypeVar("T")
_FILENAME = re.compile(r"[^A-Za-z0-9._ -]")


async def _owned(request: web.Request) -> dict[str, object]:
    file_id = request.match_info["file_id"]
    meta = await request.app[BATCHES].io(request.app[BATCHES].store.get_file, file_id)
    if meta is None or meta.get("team") != team_of(request):
        raise NotFound(f"No such File object: {file_id}", code="file_not_found", param="file_id")
    return meta


async def upload(request: web.Request) -> web.Response:
    config = request.app[RUNTIME].current.config
    if not request.content_type.startswith("multipart/"):
        raise InvalidRequest("send the file as multipart/form-data with fields 'file' and 'purpose'")
    coding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if coding != "identity":  # a JSONL upload is sent as is (OpenAI's SDK never compresses it)
        raise InvalidRequest(
            f"Content-Encoding {coding!r} is not accepted on /v1/files; upload the file uncompressed",
            code="unsupported_content_encoding",
            status=415,
        )
    try:
        purpose, filename, data = await _read_form(
            request, config.batch.max_file_bytes, config.server.body_read_timeout_s
        )
    except ValueError as exc:  # aiohttp's multipart reader: a missing boundary, a body cut short...
        raise InvalidRequest(f"the multipart body cannot be read: {exc}", code="invalid_multipart") from None
    if purpose is None:
        raise InvalidRequest(
            "Missing required parameter: 'purpose'.", code="missing_required_parameter", param="purpose"
        )
    if purpose != "batch":
        raise InvalidRequest(
            f"Invalid value for 'purpose': {purpose!r}; this proxy stores files for the Batch API only ('batch').",
            code="invalid_value",
            param="purpose",
        )
    if data is None:
        raise InvalidRequest("Missing required parameter: 'file'.", code="missing_required_parameter", param="file")
    store = request.app[BATCHES].store
    meta = await request.app[BATCHES].io(store.put_file, team_of(request), filename, purpose, data)
    return web.json_response(public_file(meta))


async def _read_form(request: web.Request, limit: int, idle_s: float) -> tuple[str | None, str, bytes | None]:
    """(purpose, filename, file bytes) of the upload form. A client that stops sending for
    ``idle_s`` (``server.body_read_timeout_s``) gets a 408: a large file may take longer than that
    in all, so the bound is on each wait, not on the whole upload."""

    async def idle(step: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(idle_s):
                return await step
        except TimeoutError:
            raise ProxyError(
                f"the upload stalled: nothing arrived for {idle_s:g}s (server.body_read_timeout_s)",
                code="body_timeout",
                status=408,
            ) from None

    reader = await request.multipart()
    purpose, filename, data = None, "upload.jsonl", None
    while (part := await idle(reader.next())) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await idle(part.text())).strip()
        elif part.name == "file":
            filename = _FILENAME.sub("_", part.filename or filename)[:255]
            out = bytearray()
            while chunk := await idle(part.read_chunk(CHUNK)):
                out += chunk
                if len(out) > limit:
                    raise PayloadTooLarge(
                        f"the file is larger than the limit of {limit} bytes ([batch] max_file_bytes)"
                    )
            data = bytes(out)
        else:
            await idle(part.release())
    return purpose, filename, data


async def list_files(request: web.Request) -> web.Response:
    """The team's files, newest first (``purpose`` filters); OpenAI's list shape."""
    found = await request.app[BATCHES].io(request.app[BATCHES].store.list_files, team_of(request))
    purpose = request.query.get("purpose")
    data = [public_file(m) for m in found if purpose is None or m.get("purpose") == purpose]
    return web.json_response({"object": "list", "data": data, "has_more": False})


async def retrieve(request: web.Request) -> web.Response:
    return web.json_response(public_file(await _owned(request)))


async def content(request: web.Request) -> web.Response:
    meta = await _owned(request)
    data = await request.app[BATCHES].io(request.app[BATCHES].store.read_file, str(meta["id"]))
    return web.Response(body=data, content_type="application/octet-stream")


async def delete(request: web.Request) -> web.Response:
    meta = await _owned(request)
    await request.app[BATCHES].io(request.app[BATCHES].store.delete_file, str(meta["id"]))
    return web.json_response({"id": meta["id"], "object": "file", "deleted": True})
