"""The only code that talks HTTP to Gemini's Batch and Files APIs: a thin async transport.

One shared aiohttp session (the upstream's); the key is passed per call because a batch job
belongs to the project (key) that created it: polling, cancelling and downloading must use the
same key, so the caller keeps it with the job record. Every failure leaves as the adapters'
:class:`UpstreamError`, built by the online Gemini error parser, with the key redacted.

Wire format (google-genai ``batches.py`` / ``files.py`` / ``_api_client.py``, and the Batch API guide):
``POST models/{m}:batchGenerateContent`` (or ``:asyncBatchEmbedContent``), ``GET batches/{id}``,
``POST batches/{id}:cancel``, ``GET batches``, the resumable upload (``upload/{v}/files``, then
the ``X-Goog-Upload-URL``), and ``GET download/{v}/files/{id}:download?alt=media``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from gemini_proxy.adapters.base import Upstream, UpstreamError
from gemini_proxy.adapters.gemini import translate
from gemini_proxy.adapters.http import MAX_ERROR_BODY
from gemini_proxy.adapters.redact import redact

# Names Gemini hands out; checked before they go into a URL path (no "../", no query smuggling).
_BATCH_NAME = re.compile(r"^batches/[A-Za-z0-9_-]{1,128}$")
_FILE_NAME = re.compile(r"^files/[A-Za-z0-9_-]{1,128}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
JSONL_MIME = "jsonl"  # what Google's own batch examples declare for the input file
DOWNLOAD_CHUNK = 1 << 20
# A results file is read whole into memory by download(); bigger ones go through download_to().
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"not a Gemini {what} name: {value!r}")
    return value


class GeminiBatchClient:
    """Batches and files of one Gemini upstream. ``session`` is shared and not closed here."""

    def __init__(self, upstream: Upstream, session: aiohttp.ClientSession) -> None:
        self.upstream = upstream
        self.session = session
        base = upstream.base_url.rstrip("/")
        self._api = f"{base}/{upstream.api_version}/"
        self._upload = f"{base}/upload/{upstream.api_version}/files"
        self._download = f"{base}/download/{upstream.api_version}/"
        self._origin = urlsplit(base)
        self._timeout = aiohttp.ClientTimeout(total=upstream.timeout_s, connect=upstream.connect_timeout_s)
        # Files may be large: what must not happen is a silence longer than timeout_s.
        self._transfer_timeout = aiohttp.ClientTimeout(
            total=None, connect=upstream.connect_timeout_s, sock_read=upstream.timeout_s
        )

    # --- batches --------------------------------------------------------------------------

    async def create(
        self, model: str, body: bytes, key: str, *, method: str = "batchGenerateContent"
    ) -> dict[str, Any]:
        """Create a job (``method`` ``asyncBatchEmbedContent`` for embeddings); the operation."""
        if method not in ("batchGenerateContent", "asyncBatchEmbedContent"):
            raise ValueError(f"not a batch method: {method!r}")
        url = f"{self._api}models/{_checked(_MODEL, model, 'model')}:{method}"
        return await self._json("POST", url, key, data=body)

    async def get(self, name: str, key: str) -> dict[str, Any]:
        return await self._json("GET", self._api + _checked(_BATCH_NAME, name, "batch"), key)

    async def cancel(self, name: str, key: str) -> dict[str, Any]:
        return await self._json("POST", self._api + _checked(_BATCH_NAME, name, "batch") + ":cancel", key)

    async def delete(self, name: str, key: str) -> dict[str, Any]:
        return await self._json("DELETE", self._api + _checked(_BATCH_NAME, name, "batch"), key)

    async def list_batches(
        self, key: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        """One page: ``{"operations": [...], "nextPageToken"}``."""
        params: dict[str, str] = {}
        if page_size is not None:
            params["pageSize"] = str(page_size)
        if page_token:
            params["pageToken"] = page_token
        return await self._json("GET", self._api + "batches", key, params=params)

    # --- files ----------------------------------------------------------------------------

    async def upload(self, data: bytes, key: str, *, display_name: str, mime_type: str = JSONL_MIME) -> dict[str, Any]:
        """Upload with the resumable protocol (start, then one ``upload, finalize``); the File."""
        start = {
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": mime_type,
        }
        meta = orjson.dumps({"file": {"displayName": display_name}})
        finish = {
            "X-Goog-Upload-Command": "upload, finalize",
            "X-Goog-Upload-Offset": "0",
            "Content-Type": "application/octet-stream",
        }
        try:
            async with self._send("POST", self._upload, key, data=meta, headers=start) as resp:
                await self._raise_for(resp, key)
                upload_url = resp.headers.get("X-Goog-Upload-URL")
            if not upload_url:
                raise self._invalid("no X-Goog-Upload-URL in the upload start answer")
            # The upload URL carries its own session id; like Google's own clients, it is sent to
            # the configured base URL's host (never elsewhere) and without the API key.
            url = self._same_origin(upload_url)
            async with self._send("POST", url, None, data=data, headers=finish, timeout=self._transfer_timeout) as resp:
                await self._raise_for(resp, key)
                status = resp.headers.get("X-Goog-Upload-Status")
                answer = await self._read_json(resp)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._wrap(exc, key) from None
        if status != "final" or not isinstance(answer.get("file"), dict):
            raise self._invalid(f"an upload that did not finalize (status {status!r})")
        file: dict[str, Any] = answer["file"]
        return file

    async def get_file(self, name: str, key: str) -> dict[str, Any]:
        return await self._json("GET", self._api + _checked(_FILE_NAME, name, "file"), key)

    async def delete_file(self, name: str, key: str) -> dict[str, Any]:
        return await self._json("DELETE", self._api + _checked(_FILE_NAME, name, "file"), key)

    async def download(self, name: str, key: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """A generated file (a job's ``responsesFile``) into memory, refused past ``max_bytes``."""
        chunks: list[bytes] = []
        size = 0
        async with contextlib.aclosing(self._download_chunks(name, key)) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > max_bytes:
                    raise self._invalid(f"a results file larger than {max_bytes} bytes (use download_to)")
                chunks.append(chunk)
        return b"".join(chunks)

    async def download_to(self, name: str, key: str, path: Path) -> int:
        """Stream a generated file to ``path`` (written beside it, then renamed); its size."""
        partial = path.with_name(path.name + ".part")
        size = 0
        out = await asyncio.to_thread(partial.open, "wb")
        try:
            async with contextlib.aclosing(self._download_chunks(name, key)) as stream:
                async for chunk in stream:
                    await asyncio.to_thread(out.write, chunk)
                    size += len(chunk)
        except BaseException:
            await asyncio.to_thread(out.close)
            await asyncio.to_thread(partial.unlink, True)  # no half file left for a restart to trust
            raise
        await asyncio.to_thread(out.close)
        await asyncio.to_thread(partial.replace, path)
        return size

    async def _download_chunks(self, name: str, key: str) -> AsyncGenerator[bytes, None]:
        url = f"{self._download}{_checked(_FILE_NAME, name, 'file')}:download"
        try:
            async with self.session.get(
                url, params={"alt": "media"}, headers=self._headers(key), timeout=self._transfer_timeout
            ) as resp:
                await self._raise_for(resp, key)
                async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                    yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._wrap(exc, key) from None

    # --- plumbing -------------------------------------------------------------------------

    def _headers(self, key: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.upstream.headers, **(extra or {})}
        if key:
            headers["x-goog-api-key"] = key
        return headers

    def _send(
        self,
        method: str,
        url: str,
        key: str | None,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        return self.session.request(
            method,
            url,
            data=data,
            params=params,
            headers=self._headers(key, headers),
            timeout=timeout or self._timeout,
        )

    async def _json(self, method: str, url: str, key: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self._send(method, url, key, **kwargs) as resp:
                await self._raise_for(resp, key)
                return await self._read_json(resp)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._wrap(exc, key) from None

    async def _read_json(self, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        raw = await resp.read()
        try:
            data = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise self._invalid("invalid JSON") from None
        if not isinstance(data, dict):
            raise self._invalid("a non-object body")
        return data

    async def _raise_for(self, resp: aiohttp.ClientResponse, key: str) -> None:
        if resp.status < 300:
            return
        raw = await resp.content.read(MAX_ERROR_BODY)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        err = translate.error_from(resp.status, body, self.upstream.name, resp.headers.get("Retry-After"))
        err.message = redact(err.message, (key,))
        raise err

    def _same_origin(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((self._origin.scheme, self._origin.netloc, parts.path, parts.query, ""))

    def _wrap(self, exc: BaseException, key: str) -> UpstreamError:
        name = self.upstream.name
        if isinstance(exc, TimeoutError):
            return UpstreamError(504, f"upstream {name} timed out", upstream=name, timeout=True)
        message = redact(f"upstream {name} unreachable: {exc.__class__.__name__}: {exc}", (key,))
        return UpstreamError(502, message, upstream=name, connection=True)

    def _invalid(self, what: str) -> UpstreamError:
        name = self.upstream.name
        return UpstreamError(502, f"upstream {name} returned {what}", upstream=name)
