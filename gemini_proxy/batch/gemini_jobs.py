"""One OpenAI batch -> Gemini batch jobs: grouping, create bodies, our own keys, and job states.

Gemini's model is per job, while an OpenAI batch names a model per line, so the validated lines
are grouped into one job per resolved ``upstream:model``. Each request carries **our own key**
(``l<line number>``, ``l<line>.<input>`` for the several inputs of one embeddings line) and the
:class:`Job` record maps keys back to ``custom_id``: results are matched by key, never by order
(a results file may come back in any order). Requests are translated with the online
translation (``build_request`` / the embeddings builder), so tools, schemas and reasoning
behave as they do online. A job goes inline when small enough, else through the Files API.

Pure: the transport is :mod:`.gemini_client`, result mapping :mod:`.gemini_results`.
Wire facts: google-genai ``batches.py`` / ``_transformers.py`` and ai.google.dev/gemini-api/docs/batch-api.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini import embed, translate
from gemini_proxy.batch.openai_files import CHAT, BatchLine, LineError, as_rejection

GENERATE = "generate"
EMBED = "embed"
INLINE = "inline"
FILE = "file"
# Google: inline requests suit batches whose total request size stays under 20 MB. Our margin
# covers the envelope around the requests and the MB-vs-MiB ambiguity.
INLINE_MAX_BYTES = 16 * 1024 * 1024

# Gemini's states on the REST wire; the SDKs (and some docs) spell them JOB_STATE_*.
PENDING = "BATCH_STATE_PENDING"
RUNNING = "BATCH_STATE_RUNNING"
SUCCEEDED = "BATCH_STATE_SUCCEEDED"
FAILED = "BATCH_STATE_FAILED"
CANCELLED = "BATCH_STATE_CANCELLED"
EXPIRED = "BATCH_STATE_EXPIRED"
UNSPECIFIED = "BATCH_STATE_UNSPECIFIED"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED})


@dataclass(frozen=True, slots=True)
class Target:
    """Where one line goes, as the server's resolver decided (routing, allow-lists, residency).

    ``body`` is the request to translate when the server rewrote the client's (a task's pinned
    schema injected); None means the line's own body.
    """

    upstream: str
    model: str
    public_model: str
    task: str | None = None
    body: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class JobLine:
    """What assembly needs about one line, small enough to persist in the job record."""

    key: str
    custom_id: str
    line: int
    public_model: str
    task: str | None = None
    include_thoughts: bool = False
    legacy_functions: bool = False
    encoding: str = "float"  # embeddings: "float" | "base64"
    inputs: int = 1  # embeddings: one Gemini request per input, keyed "<key>.<i>"
    est_tokens: int = 0  # embeddings: the estimate when Gemini reports no token count

    def keys(self) -> list[str]:
        return [f"{self.key}.{i}" for i in range(self.inputs)]


@dataclass(frozen=True, slots=True)
class Job:
    """One Gemini batch job of an OpenAI batch: the durable record (no request payloads)."""

    index: int
    upstream: str
    model: str
    kind: str  # GENERATE | EMBED
    mode: str  # INLINE | FILE
    display_name: str
    lines: tuple[JobLine, ...]

    @property
    def method(self) -> str:
        return "batchGenerateContent" if self.kind == GENERATE else "asyncBatchEmbedContent"

    def requests(self) -> int:
        return sum(line.inputs for line in self.lines) if self.kind == EMBED else len(self.lines)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        lines = tuple(JobLine(**line) for line in data["lines"])
        return cls(**{**data, "lines": lines})


@dataclass(frozen=True, slots=True)
class JobPlan:
    """A job ready to submit: inline, ``payload`` is the whole create body; by file, the JSONL
    to upload first (then :meth:`create_body` with the uploaded file's name)."""

    job: Job
    payload: bytes

    def create_body(self, file_name: str | None = None) -> bytes:
        if self.job.mode == INLINE:
            return self.payload
        if not file_name:
            raise ValueError("a file-mode job needs the uploaded file's name (files/...)")
        return orjson.dumps({"batch": {"displayName": self.job.display_name, "inputConfig": {"fileName": file_name}}})


def plan_jobs(
    resolved: Sequence[tuple[BatchLine, Target]],
    endpoint: str,
    *,
    batch_id: str,
    inline_max_bytes: int = INLINE_MAX_BYTES,
) -> tuple[list[JobPlan], list[LineError]]:
    """Group lines by resolved ``upstream:model`` (first appearance order) and build each job.

    A line the online translation refuses becomes a ``LineError``: the batch fails at
    validating, as an online request with that body would fail with 400.
    """
    groups: dict[tuple[str, str], list[tuple[BatchLine, Target]]] = {}
    for line, target in resolved:
        groups.setdefault((target.upstream, target.model), []).append((line, target))
    plans: list[JobPlan] = []
    errors: list[LineError] = []
    for (upstream, model), members in groups.items():
        entries: list[tuple[str, dict[str, Any]]] = []
        lines: list[JobLine] = []
        for line, target in members:
            try:
                job_line, requests = _translate(line, target, endpoint)
            except RequestError as exc:
                rejection = as_rejection(exc)
                errors.append(LineError(rejection.code, rejection.message, rejection.param, line.line))
                continue
            lines.append(job_line)
            entries += requests
        if lines:
            index = len(plans)
            kind = GENERATE if endpoint == CHAT else EMBED
            display = f"{batch_id}-{index}"
            mode, payload = _payload(entries, display, inline_max_bytes)
            plans.append(JobPlan(Job(index, upstream, model, kind, mode, display, tuple(lines)), payload))
    return plans, errors


def _translate(line: BatchLine, target: Target, endpoint: str) -> tuple[JobLine, list[tuple[str, dict[str, Any]]]]:
    body = target.body if target.body is not None else line.body
    key = f"l{line.line}"
    common: dict[str, Any] = {
        "key": key,
        "custom_id": line.custom_id,
        "line": line.line,
        "public_model": target.public_model,
    }
    if endpoint == CHAT:
        # JSON mode stays native: a batch answer is not validated against the line's own schema,
        # so a 2.x model that refuses JSON beside tools fails the line clearly (400) instead.
        request = translate.build_request(target.model, body, json_by_instruction=False)
        job_line = JobLine(
            **common,
            task=target.task,
            include_thoughts=translate.wants_reasoning(body),
            legacy_functions=translate.uses_legacy_functions(body),
        )
        return job_line, [(key, request)]
    texts = embed.inputs_of(body)
    requests = [r for batch in embed.build_batches(target.model, body) for r in batch["requests"]]
    job_line = JobLine(
        **common,
        task=target.task,
        encoding=embed.encoding_of(body),
        inputs=len(requests),
        est_tokens=embed.estimate_tokens(texts),
    )
    return job_line, [(f"{key}.{i}", request) for i, request in enumerate(requests)]


def _payload(entries: list[tuple[str, dict[str, Any]]], display: str, inline_max: int) -> tuple[str, bytes]:
    inline = [orjson.dumps({"request": request, "metadata": {"key": key}}) for key, request in entries]
    if sum(len(item) + 1 for item in inline) <= inline_max:
        head = orjson.dumps({"batch": {"displayName": display, "inputConfig": {"requests": {"requests": []}}}})
        # Splice the already-serialized requests into the empty list instead of dumping twice.
        body = head.replace(b'"requests":[]', b'"requests":[' + b",".join(inline) + b"]", 1)
        return INLINE, body
    return FILE, b"".join(orjson.dumps({"key": key, "request": request}) + b"\n" for key, request in entries)


# --- states ----------------------------------------------------------------------------------


def state_of(operation: dict[str, Any]) -> str:
    """The job's state as Gemini's REST wire spells it (``JOB_STATE_*`` accepted too)."""
    meta = operation.get("metadata")
    state = meta.get("state") if isinstance(meta, dict) else None
    if not isinstance(state, str) or not state:
        return UNSPECIFIED
    return "BATCH_STATE_" + state.removeprefix("JOB_STATE_") if state.startswith("JOB_STATE_") else state


def is_terminal(operation: dict[str, Any]) -> bool:
    return state_of(operation) in TERMINAL


def stats_of(operation: dict[str, Any]) -> dict[str, int]:
    """``batchStats`` as ints (the wire sends int64 as strings, and omits zero counts)."""
    meta = operation.get("metadata")
    stats = meta.get("batchStats") if isinstance(meta, dict) else None
    out = {"requestCount": 0, "successfulRequestCount": 0, "failedRequestCount": 0, "pendingRequestCount": 0}
    for name in out:
        raw = stats.get(name) if isinstance(stats, dict) else None
        try:
            out[name] = int(raw) if raw is not None else 0
        except (TypeError, ValueError):
            out[name] = 0
    return out


def output_of(operation: dict[str, Any]) -> dict[str, Any]:
    """The job's output: ``response`` (what the guide reads) or ``metadata.output`` (what the SDK reads)."""
    response = operation.get("response")
    if isinstance(response, dict) and ("inlinedResponses" in response or "responsesFile" in response):
        return response
    meta = operation.get("metadata")
    output = meta.get("output") if isinstance(meta, dict) else None
    return output if isinstance(output, dict) else {}


def openai_status(states: Iterable[str], *, cancel_requested: bool = False) -> str:
    """The OpenAI batch status for the states of its Gemini jobs.

    ``validating`` (our own line checks) and ``finalizing`` (writing the output files) are set
    by the server around this: here a batch is running until every job is terminal. A batch
    whose every job failed is ``failed``; otherwise a cancel wins, then expiry; results of the
    jobs that did finish are kept either way, as OpenAI keeps partial results.
    """
    states = list(states)
    if any(s not in TERMINAL for s in states):
        return "cancelling" if cancel_requested else "in_progress"
    if states and all(s == FAILED for s in states):
        return "failed"
    if cancel_requested or CANCELLED in states:
        return "cancelled"
    if EXPIRED in states:
        return "expired"
    return "completed"
