"""A fake of Gemini's Batch and Files APIs on loopback, in the real wire format, scriptable.

Mount it beside the online fake (no change to tests/fakes/gemini.py needed)::

    fake = FakeGemini(); batch = FakeGeminiBatch()
    app = fake.app(); batch.mount(app)          # models/{m}:batchGenerateContent, batches/..., files
    batch.script(PENDING, RUNNING, EXPIRED)     # the state sequence of the next created job
    batch.fail_keys.add("l3")                   # that request gets a per-line error

or run it alone with :meth:`FakeGeminiBatch.app`. Behaviour (shapes from google-genai and real captured answers):

- create answers the Operation with ``metadata.state`` = the first scripted state
  (default PENDING -> RUNNING -> SUCCEEDED); **each GET advances one step**, so tests poll through
  the states without timing. ``batchStats`` counts are int64 strings, zero counts omitted.
- SUCCEEDED: inline jobs get ``inlinedResponses`` in input order (``drop_metadata`` leaves out the
  echoed metadata); file jobs get a generated ``responsesFile`` whose lines are **shuffled**.
  Both in ``response`` and ``metadata.output``, as the real API sends them.
- Each request is answered with ``answer(model, request)`` (the simulated Gemini's deterministic
  answer unless replaced); keys in ``fail_keys`` get a per-line google.rpc error instead.
- cancel -> CANCELLED at once; EXPIRED/FAILED/CANCELLED jobs carry no results.
- A job or file belongs to the key that created it: other keys get 404, as another project would.
- Strict: unknown fields and wrong shapes are 400 INVALID_ARGUMENT (tests/fakes/gemini_batch_rules.py).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from gemini_proxy.adapters.simulated.gemini import default_answer, embed_answer, error_body
from gemini_proxy.adapters.simulated.rules import MODEL_NAME, _get, _keys
from tests.fakes.gemini_batch_rules import EMBED_METHOD, Entry, check_create, file_entries
from tests.fakes.gemini_batch_rules import inline_entries as parse_inline

PENDING, RUNNING, SUCCEEDED = "BATCH_STATE_PENDING", "BATCH_STATE_RUNNING", "BATCH_STATE_SUCCEEDED"
FAILED, CANCELLED, EXPIRED = "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})
_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main."
GOOGLE = "https://generativelanguage.googleapis.com"  # where real upload URLs point
TIME = "2026-01-01T00:00:00.000000Z"
_MODEL_CALL = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):(batchGenerateContent|asyncBatchEmbedContent)$")
_VERSION = "{version:v1beta|v1|v1alpha}"


@dataclass
class FakeFile:
    name: str
    owner: str
    display_name: str
    mime_type: str
    data: bytes
    source: str  # "UPLOADED" | "GENERATED"

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "displayName": self.display_name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": TIME,
            "updateTime": TIME,
            "expirationTime": TIME,
            "sha256Hash": base64.b64encode(hashlib.sha256(self.data).hexdigest().encode()).decode(),
            "uri": f"{GOOGLE}/v1beta/{self.name}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.source == "GENERATED":
            out["downloadUri"] = f"{GOOGLE}/download/v1beta/{self.name}:download?alt=media"
        return out


@dataclass
class FakeJob:
    name: str
    owner: str
    model: str
    method: str
    display_name: str
    entries: list[Entry]
    states: list[str]
    input_file: str | None = None
    step: int = 0
    cancelled: bool = False
    output: dict[str, Any] | None = None
    failures: int = 0

    @property
    def state(self) -> str:
        return CANCELLED if self.cancelled else self.states[self.step]


class FakeGeminiBatch:
    def __init__(self, answer: Callable[[str, dict[str, Any]], dict[str, Any]] = default_answer, seed: int = 7):
        self.answer = answer
        self.jobs: dict[str, FakeJob] = {}
        self.files: dict[str, FakeFile] = {}
        self.uploads: dict[str, tuple[str, dict[str, Any], int, bytearray]] = {}
        self.calls: list[dict[str, Any]] = []  # every request: method, path, key, query
        self.scripts: deque[list[str]] = deque()
        self.fail_keys: set[str] = set()
        self.drop_metadata = False
        self.shuffle = True
        self.failure = {"code": 13, "message": "Internal error encountered."}
        self.random = random.Random(seed)
        self._ids = itertools.count(1)

    def script(self, *states: str) -> FakeGeminiBatch:
        """The state sequence of the next created job (each GET moves one step along it)."""
        self.scripts.append(list(states))
        return self

    # --- mounting --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.mount(app)
        return app

    def mount(self, app: web.Application) -> None:
        """Add the batch and file routes, and take ``models/{m}:batch...`` calls before the
        online fake's ``models/{call}`` route does (a middleware: no edit of FakeGemini needed)."""

        @web.middleware
        async def intercept(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
            match = _MODEL_CALL.match(request.path)
            if request.method == "POST" and match:
                return await self.create(request, match[2], match[3])
            return await handler(request)

        app.middlewares.append(intercept)
        r = app.router
        r.add_get(f"/{_VERSION}/batches", self.list_jobs)
        r.add_route("*", f"/{_VERSION}/batches/{{id}}", self.job_call)
        r.add_post(f"/upload/{_VERSION}/files", self.upload)
        r.add_route("*", f"/{_VERSION}/files/{{id}}", self.file_call)
        r.add_get(f"/download/{_VERSION}/files/{{id}}", self.download)

    # --- helpers ---------------------------------------------------------------------------

    def _key(self, request: web.Request) -> str | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        self.calls.append({"method": request.method, "path": request.path, "key": key, "query": dict(request.query)})
        return key

    @staticmethod
    def _error(status: int, message: str, grpc: str) -> web.Response:
        return web.Response(status=status, body=error_body(status, message, grpc), content_type="application/json")

    def _no_key(self) -> web.Response:
        return self._error(403, "Method doesn't allow unregistered callers. Please use API Key.", "PERMISSION_DENIED")

    def _not_found(self) -> web.Response:
        return self._error(404, "Requested entity was not found.", "NOT_FOUND")

    @staticmethod
    def _json(data: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(body=orjson.dumps(data), content_type="application/json", headers=headers)

    # --- batches ---------------------------------------------------------------------------

    async def create(self, request: web.Request, model: str, method: str) -> web.Response:
        key = self._key(request)
        if not key:
            return self._no_key()
        if not MODEL_NAME.match(model):
            return self._error(404, f"models/{model} is not found for API version v1beta.", "NOT_FOUND")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        batch, problem = check_create(model, method, body)
        entries: list[Entry] = []
        file_name = None
        if batch is not None:
            config = _get(batch, "inputConfig")
            file_name = _get(config, "fileName")
            if file_name is None:
                entries, problem = parse_inline(model, method, config)
            elif (file := self.files.get(str(file_name))) is None or file.owner != key or file.source != "UPLOADED":
                return self._error(404, f"File {file_name} not found.", "NOT_FOUND")
            else:
                entries, problem = file_entries(model, method, file.data)
        if problem or batch is None:
            return self._error(400, problem or "Invalid JSON payload received.", "INVALID_ARGUMENT")
        name = f"batches/fakejob{next(self._ids):04d}"
        states = self.scripts.popleft() if self.scripts else [PENDING, RUNNING, SUCCEEDED]
        job = FakeJob(name, key, model, method, _get(batch, "displayName"), entries, states, file_name)
        self.jobs[name] = job
        return self._json(self._operation(job))

    async def job_call(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if not key:
            return self._no_key()
        ident, _, verb = request.match_info["id"].partition(":")
        job = self.jobs.get(f"batches/{ident}")
        if job is None or job.owner != key:
            return self._not_found()
        if request.method == "POST" and verb == "cancel":
            if job.state in TERMINAL:
                return self._error(400, f"Batch {job.name} is already in a terminal state.", "FAILED_PRECONDITION")
            job.cancelled = True
            return self._json({})
        if request.method == "DELETE" and not verb:
            del self.jobs[job.name]
            return self._json({})
        if request.method != "GET" or verb:
            return self._error(404, f"Method {verb or request.method} not found.", "NOT_FOUND")
        job.step = min(job.step + 1, len(job.states) - 1)  # each poll moves the script along
        return self._json(self._operation(job))

    async def list_jobs(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if not key:
            return self._no_key()
        if err := _keys(dict(request.query), {"pageSize", "pageToken", "key"}, "query"):
            return self._error(400, err, "INVALID_ARGUMENT")
        mine = [job for job in self.jobs.values() if job.owner == key]
        start = int(request.query.get("pageToken") or 0)
        size = int(request.query.get("pageSize") or 10)
        page: dict[str, Any] = {"operations": [self._operation(j) for j in mine[start : start + size]]}
        if start + size < len(mine):
            page["nextPageToken"] = str(start + size)
        return self._json(page)

    def _operation(self, job: FakeJob) -> dict[str, Any]:
        embed = job.method == EMBED_METHOD
        n = len(job.entries)
        meta: dict[str, Any] = {
            "@type": _TYPE + ("EmbedContentBatch" if embed else "GenerateContentBatch"),
            "model": f"models/{job.model}",
            "displayName": job.display_name,
            "createTime": TIME,
            "updateTime": TIME,
            "state": job.state,
            "name": job.name,
        }
        if job.input_file:
            meta["inputConfig"] = {"fileName": job.input_file}
        if job.state == SUCCEEDED:
            self._finish(job)
            stats = {"requestCount": n, "successfulRequestCount": n - job.failures, "failedRequestCount": job.failures}
        else:
            stats = {"requestCount": n, "pendingRequestCount": 0 if job.state in TERMINAL else n}
        meta["batchStats"] = {k: str(v) for k, v in stats.items() if v}  # int64 as strings, zeros omitted
        op: dict[str, Any] = {"name": job.name, "metadata": meta}
        if job.state in TERMINAL:
            op["done"] = True
            meta["endTime"] = TIME
        if job.state == SUCCEEDED and job.output is not None:
            meta["output"] = job.output
            op["response"] = {"@type": _TYPE + ("EmbedContentBatchOutput" if embed else "GenerateContentBatchOutput")}
            op["response"].update(job.output)
        elif job.state == FAILED:
            op["error"] = dict(self.failure)
        return op

    def _finish(self, job: FakeJob) -> None:
        if job.output is not None:
            return
        results = []
        for key, req, meta in job.entries:
            if key is not None and key in self.fail_keys:
                item: dict[str, Any] = {"error": {"code": 3, "message": "Request contains an invalid argument."}}
                job.failures += 1
            elif job.method == EMBED_METHOD:
                vector = embed_answer(job.model, {"requests": [req]})["embeddings"][0]
                item = {"response": {"embedding": vector}}
            else:
                item = {"response": self.answer(job.model, req)}
            results.append((key, item, meta))
        if job.input_file is None:
            inline = [
                {**item, **({} if self.drop_metadata or meta is None else {"metadata": meta})}
                for _, item, meta in results
            ]
            job.output = {"inlinedResponses": {"inlinedResponses": inline}}
            return
        lines = [{"key": key, **item} for key, item, _ in results]
        if self.shuffle:
            self.random.shuffle(lines)
        name = f"files/batch-{job.name.removeprefix('batches/')}"
        data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        self.files[name] = FakeFile(name, job.owner, name, "application/jsonl", data, "GENERATED")
        job.output = {"responsesFile": name}

    # --- files -----------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        if "upload_id" in request.query:
            self._key(request)
            return await self._upload_bytes(request)
        key = self._key(request)
        if not key:
            return self._no_key()
        headers = request.headers
        size = headers.get("X-Goog-Upload-Header-Content-Length", "")
        if headers.get("X-Goog-Upload-Protocol") != "resumable" or headers.get("X-Goog-Upload-Command") != "start":
            return self._error(
                400, "Upload protocol not supported: send X-Goog-Upload-Protocol: resumable", "INVALID_ARGUMENT"
            )
        if not size.isdigit():
            return self._error(400, "X-Goog-Upload-Header-Content-Length is required.", "INVALID_ARGUMENT")
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            body = None
        meta = body.get("file", {}) if isinstance(body, dict) else None
        problem = _keys(body, {"file"}, "") if isinstance(body, dict) else "Invalid JSON payload received."
        if problem is None and isinstance(meta, dict):
            problem = _keys(meta, {"name", "displayName", "mimeType", "sizeBytes"}, "file")
        if problem or not isinstance(meta, dict):
            return self._error(400, problem or "file must be an object", "INVALID_ARGUMENT")
        meta = {**meta, "mimeType": headers.get("X-Goog-Upload-Header-Content-Type", "application/octet-stream")}
        upload_id = f"fakeupload{next(self._ids):04d}"
        self.uploads[upload_id] = (key, meta, int(size), bytearray())
        url = f"{GOOGLE}/upload/{request.match_info['version']}/files?upload_id={upload_id}&upload_protocol=resumable"
        return web.Response(headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})

    async def _upload_bytes(self, request: web.Request) -> web.Response:
        pending = self.uploads.get(request.query["upload_id"])
        if pending is None:
            return self._not_found()
        owner, meta, declared, buffer = pending
        command = request.headers.get("X-Goog-Upload-Command", "")
        if "upload" not in command or request.headers.get("X-Goog-Upload-Offset") != str(len(buffer)):
            return self._error(400, "Invalid upload command or offset.", "INVALID_ARGUMENT")
        buffer += await request.read()
        if "finalize" not in command:
            return web.Response(headers={"X-Goog-Upload-Status": "active"})
        if len(buffer) != declared:
            return self._error(
                400, f"Upload size {len(buffer)} does not match the declared {declared}.", "INVALID_ARGUMENT"
            )
        del self.uploads[request.query["upload_id"]]
        name = f"files/fakefile{next(self._ids):04d}"
        file = FakeFile(name, owner, _get(meta, "displayName") or name, meta["mimeType"], bytes(buffer), "UPLOADED")
        self.files[name] = file
        return self._json({"file": file.to_json()}, headers={"X-Goog-Upload-Status": "final"})

    async def file_call(self, request: web.Request) -> web.StreamResponse:
        ident, _, verb = request.match_info["id"].partition(":")
        if verb == "download":  # google-genai's own download URL form
            return await self.download(request)
        key = self._key(request)
        file = self.files.get(f"files/{ident}")
        if not key:
            return self._no_key()
        if file is None or file.owner != key or verb:
            return self._not_found()
        if request.method == "DELETE":
            del self.files[file.name]
            return self._json({})
        return self._json(file.to_json())

    async def download(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        ident, _, verb = request.match_info["id"].partition(":")
        file = self.files.get(f"files/{ident}")
        if not key:
            return self._no_key()
        if file is None or file.owner != key or verb != "download":
            return self._not_found()
        if request.query.get("alt") != "media" or file.source != "GENERATED":
            return self._error(400, "Only generated files can be downloaded, with alt=media.", "INVALID_ARGUMENT")
        return web.Response(body=file.data, content_type="application/octet-stream")
