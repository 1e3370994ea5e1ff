"""The built-in simulated Gemini Batch + Files API, so ``gemini-proxy demo`` runs OpenAI batches too.

Just enough of the real wire format for the proxy's batch transport (gemini_proxy/batch/gemini_client.py):
``models/{m}:batchGenerateContent`` / ``:asyncBatchEmbedContent`` (inline or ``fileName``),
``GET batches/{id}`` (pending on creation, succeeded from the first look on), ``batches/{id}:cancel``,
the resumable upload and the results download. Answers are the simulated Gemini's own. The test
fake (tests/fakes/gemini_batch.py) is the strict, scriptable one; this one is for trying it out.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.simulated.gemini import default_answer, embed_answer, error_body

_CREATE = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):(batchGenerateContent|asyncBatchEmbedContent)$")
_V = "{version:v1beta|v1|v1alpha}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Job:
    name: str
    model: str
    embed: bool
    entries: list[tuple[str | None, dict[str, Any]]]  # (key, request)
    by_file: bool
    state: str = "BATCH_STATE_PENDING"
    output: dict[str, Any] | None = None


class SimulatedBatch:
    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self._ids = itertools.count(1)

    def mount(self, app: web.Application) -> None:
        """Take the batch create calls before the online ``models/{call}`` route, add the rest."""

        @web.middleware
        async def intercept(request: web.Request, handler: Handler) -> web.StreamResponse:
            match = _CREATE.match(request.path)
            if request.method == "POST" and match:
                return await self.create(request, match[2], match[3] == "asyncBatchEmbedContent")
            return await handler(request)

        app.middlewares.append(intercept)
        app.router.add_route("*", f"/{_V}/batches/{{id}}", self.job)
        app.router.add_post(f"/upload/{_V}/files", self.upload)
        app.router.add_get(f"/download/{_V}/files/{{id}}", self.download)

    @staticmethod
    def _error(status: int, message: str, grpc: str) -> web.Response:
        return web.Response(status=status, body=error_body(status, message, grpc), content_type="application/json")

    async def create(self, request: web.Request, model: str, embed: bool) -> web.Response:
        try:
            batch = orjson.loads(await request.read())["batch"]
            config = batch["inputConfig"]
            if "fileName" in config:
                lines = [orjson.loads(raw) for raw in self.files[config["fileName"]].splitlines() if raw.strip()]
                entries = [(item.get("key"), item["request"]) for item in lines]
            else:
                items = config["requests"]["requests"]
                entries = [((item.get("metadata") or {}).get("key"), item["request"]) for item in items]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            return self._error(400, "Invalid batch create request.", "INVALID_ARGUMENT")
        name = f"batches/simjob{next(self._ids):04d}"
        self.jobs[name] = _Job(name, model, embed, entries, "fileName" in config)
        return web.json_response(self._operation(self.jobs[name]))

    async def job(self, request: web.Request) -> web.Response:
        ident, _, verb = request.match_info["id"].partition(":")
        job = self.jobs.get(f"batches/{ident}")
        if job is None:
            return self._error(404, "Requested entity was not found.", "NOT_FOUND")
        if request.method == "POST" and verb == "cancel":
            if job.state == "BATCH_STATE_PENDING":
                job.state = "BATCH_STATE_CANCELLED"
            return web.json_response({})
        if job.state == "BATCH_STATE_PENDING":
            self._finish(job)
        return web.json_response(self._operation(job))

    def _finish(self, job: _Job) -> None:
        results = []
        for key, req in job.entries:
            if job.embed:
                response = {"embedding": embed_answer(job.model, {"requests": [req]})["embeddings"][0]}
            else:
                response = default_answer(job.model, req)
            results.append((key, response))
        if job.by_file:
            name = f"files/simresult{next(self._ids):04d}"
            self.files[name] = b"".join(orjson.dumps({"key": k, "response": r}) + b"\n" for k, r in results)
            job.output = {"responsesFile": name}
        else:
            inline = [{"response": r, "metadata": {"key": k}} for k, r in results]
            job.output = {"inlinedResponses": {"inlinedResponses": inline}}
        job.state = "BATCH_STATE_SUCCEEDED"

    def _operation(self, job: _Job) -> dict[str, Any]:
        n = str(len(job.entries))
        op: dict[str, Any] = {
            "name": job.name,
            "metadata": {"name": job.name, "model": f"models/{job.model}", "state": job.state},
        }
        op["metadata"]["batchStats"] = {"requestCount": n}
        if job.state != "BATCH_STATE_PENDING":
            op["done"] = True
        if job.output is not None:
            op["response"] = job.output
        return op

    async def upload(self, request: web.Request) -> web.Response:
        upload_id = request.query.get("upload_id")
        if upload_id is None:  # start: hand out the URL the bytes go to
            upload_id = f"simupload{next(self._ids):04d}"
            self.uploads[upload_id] = bytearray()
            base = f"{request.scheme}://{request.host}"
            url = f"{base}/upload/{request.match_info['version']}/files?upload_id={upload_id}"
            return web.Response(headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})
        if upload_id not in self.uploads:
            return self._error(404, "Upload not found.", "NOT_FOUND")
        data = self.uploads.pop(upload_id) + await request.read()
        name = f"files/simfile{next(self._ids):04d}"
        self.files[name] = bytes(data)
        file = {"name": name, "sizeBytes": str(len(data)), "state": "ACTIVE"}
        return web.json_response({"file": file}, headers={"X-Goog-Upload-Status": "final"})

    async def download(self, request: web.Request) -> web.Response:
        ident, _, _ = request.match_info["id"].partition(":")
        data = self.files.get(f"files/{ident}")
        if data is None:
            return self._error(404, "Requested entity was not found.", "NOT_FOUND")
        return web.Response(body=data, content_type="application/octet-stream")
