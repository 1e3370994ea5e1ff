"""The background side of the Batch API: poll Gemini jobs, assemble the output and error files, account.

One :class:`BatchRunner` per app (``app[BATCHES]``), started and stopped in the app's
``cleanup_ctx``. Its loop wakes when a batch is created or cancelled, or when the earliest
batch is due; each batch's poll interval starts at ``[batch] poll_s`` and doubles while nothing
changes, up to ``poll_max_s``. On start every unfinished record is polled at once: a restart
resumes where the last process left off, because the records (and which key created each job)
are on disk (:mod:`gemini_proxy.batch.store`).

When a Gemini job ends, its results are mapped back by our own per-line key (never by order),
translated with the online response translation, a task's schema is checked
(``on_invalid``: the task's default or an error line), and each request gets one access-log line
(``lane`` ``batch``, ``batch_id``, ``custom_id``, the batch price) and is charged to the team's
budget. When every job of a batch has ended, the output and error files are written and the
batch takes its final OpenAI status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from gemini_proxy.adapters.base import Completion, UpstreamError, Usage, make_session
from gemini_proxy.batch import gemini_jobs as jobs
from gemini_proxy.batch import gemini_results as results
from gemini_proxy.batch.gemini_client import GeminiBatchClient
from gemini_proxy.batch.gemini_jobs import Job, JobLine
from gemini_proxy.batch.gemini_results import LineResult
from gemini_proxy.batch.openai_files import LineRejected, jsonl
from gemini_proxy.batch.rows import cancelled_rows, split_rows, usage_of_rows
from gemini_proxy.batch.store import BatchStore
from gemini_proxy.config import Config
from gemini_proxy.errors import InternalError
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.observe.telemetry import Telemetry
from gemini_proxy.routing.meter import TeamMeter
from gemini_proxy.runtime import Runtime, RuntimeRef
from gemini_proxy.structured import enforce

log = logging.getLogger("gemini_proxy")
LANE = "batch"
STORE_RETRY_S = 60.0  # an unusable folder (not mounted, not writable) is tried again after this
T = TypeVar("T")
Emit = Callable[[RequestRecord], None]
# (runtime, record, local entry, input file bytes, emit, rows out): runs a local job's lines.
RunLocal = Callable[[Runtime, dict[str, Any], dict[str, Any], "bytes | None", Emit, list[Any]], Awaitable[None]]
_FINAL_AT = {"completed": "completed_at", "failed": "failed_at", "expired": "expired_at", "cancelled": "cancelled_at"}


class BatchRunner:
    """Polls the unfinished batches of one store; owns the sessions its Gemini calls use."""

    def __init__(
        self, store: BatchStore, runtime: RuntimeRef, telemetry: Telemetry, meter: TeamMeter, run_local: RunLocal
    ) -> None:
        self.store = store
        self.run_local = run_local  # http/batch_local.run_lines: the lines of a route without a batch API
        self.runtime = runtime
        self.telemetry = telemetry
        self.meter = meter
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._wake = asyncio.Event()
        self._locks: dict[str, asyncio.Lock] = {}
        self._local: dict[tuple[str, int], asyncio.Task[None]] = {}  # local jobs running in this process
        self._stoppable: set[tuple[str, int]] = set()  # ... whose lines are still running
        self._cancelled: set[tuple[str, int]] = set()  # ... and those a client cancelled

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self.runtime.current.config

    def client(self, upstream: str) -> GeminiBatchClient:
        """The batch transport of ``upstream``, over a session of its own: long downloads and
        uploads must not hold connections the online requests' pool needs."""
        spec = self.config.upstreams[upstream].spec
        session = self._sessions.get(upstream)
        if session is None or session.closed:
            session = self._sessions[upstream] = make_session(spec)
        return GeminiBatchClient(spec, session)

    def key(self, upstream: str, key_id: str) -> str:
        """The key that created a job (a Gemini job belongs to its key's project); "" when it is gone."""
        pool = self.runtime.current.keys.get(upstream)
        for slot in pool.slots if pool else ():
            if slot.key.id == key_id:
                return slot.key.value or ""
        return ""

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call off the event loop; a folder the proxy cannot write is named in the error."""
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            where = self.config.batch.dir
            log.error("batch store %s: %s", where, exc)
            raise InternalError(
                f"the batch store ([batch] dir = {where!r}) cannot be used: {exc.strerror or exc}",
                code="batch_store_unavailable",
            ) from None

    def lock(self, batch_id: str) -> asyncio.Lock:
        return self._locks.setdefault(batch_id, asyncio.Lock())

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        self.store.release()
        tasks = list(self._local.values())  # shutdown: a local job left unfinished runs again after a restart
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in self._sessions.values():
            await session.close()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll due batches until cancelled; everything unfinished is due at start (a restart resumes)."""
        broken: dict[str, float] = {}  # batch id -> when to try a record whose poll raised again
        first = True
        while True:
            self._wake.clear()
            try:
                delay = await self._turn(first, broken)
                first = False
            except OSError as exc:  # the folder itself is unusable: say so, and try again later
                delay = max(STORE_RETRY_S, self.config.batch.poll_s)
                log.error("batch store %s cannot be used: %s; polling again in %gs", self.store.root, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.001))

    async def _turn(self, first: bool, broken: dict[str, float]) -> float:
        """Poll what is due; how long to wait before the next turn."""
        poll_s = self.config.batch.poll_s
        if not await asyncio.to_thread(self.store.lead):  # another replica polls this folder
            return poll_s
        now = time.time()
        for record in await asyncio.to_thread(self.store.active_batches):
            due = first or record.get("next_poll_at", 0) <= now or record.get("status") == "cancelling"
            if due and broken.get(record["id"], 0) <= now:
                try:
                    await self.poll(record["id"])
                    broken.pop(record["id"], None)
                except Exception:  # one broken record must not stop every other batch, nor spin
                    log.exception("batch %s: polling failed", record.get("id"))
                    broken[record["id"]] = time.time() + self.config.batch.poll_max_s
        pending = await asyncio.to_thread(self.store.active_batches)
        due_at = [max(r.get("next_poll_at", now), broken.get(r["id"], 0)) for r in pending]
        # At least every poll_s: batches created or cancelled on other replicas are seen then.
        return min([max(0.0, d - time.time()) for d in due_at] + [poll_s])

    async def poll(self, batch_id: str) -> dict[str, Any] | None:
        """Look at every unfinished job of one batch once; finish the batch when all have ended."""
        async with self.lock(batch_id):
            record = await asyncio.to_thread(self.store.get_batch, batch_id)
            if record is None or record.get("status") not in ("in_progress", "finalizing", "cancelling"):
                return record
            changed = False
            for entry in record["jobs"]:
                if entry["done"]:
                    continue
                if entry.get("local"):
                    changed |= await self._local_job(record, entry)
                    continue
                state, operation = await self._state(entry)
                changed |= state != entry["state"]
                entry["state"] = state
                if state in jobs.TERMINAL:
                    await self._finish_job(record, entry, state, operation)
            if all(entry["done"] for entry in record["jobs"]):
                await self._finalize(record)
            else:
                cfg = self.config.batch
                interval = cfg.poll_s if changed else min(float(record.get("poll_s", cfg.poll_s)) * 2, cfg.poll_max_s)
                record["poll_s"], record["next_poll_at"] = interval, time.time() + interval
            await asyncio.to_thread(self.store.put_batch, record)
            return record

    async def _state(self, entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        job = Job.from_record(entry["job"])
        try:
            operation = await self.client(job.upstream).get(entry["name"], self.key(job.upstream, entry["key_id"]))
        except UpstreamError as err:
            if err.status == 404:  # the job is gone upstream (deleted, or its key's project changed)
                return jobs.FAILED, {"error": {"message": f"the Gemini job {entry['name']} no longer exists"}}
            log.warning("batch job %s: poll failed, trying again later: %s", entry["name"], err.message)
            return str(entry["state"]), {}
        return jobs.state_of(operation), operation

    async def cancel_job(self, batch_id: str, entry: dict[str, Any]) -> None:
        """Ask Gemini to cancel one job (best effort: a job that already ended stays as it is), or
        stop a local job (its finished lines are kept)."""
        if entry.get("local"):
            key = (batch_id, int(entry["job"]["index"]))
            task = self._local.get(key)
            if task is not None and key in self._stoppable:  # lines still running (not being recorded)
                self._cancelled.add(key)
                task.cancel()
            return
        job = Job.from_record(entry["job"])
        try:
            await self.client(job.upstream).cancel(entry["name"], self.key(job.upstream, entry["key_id"]))
        except UpstreamError as err:
            log.info("batch job %s: cancel not taken: %s", entry["name"], err.message)

    # --- local jobs (routes without a batch API) -------------------------------------------

    async def _local_job(self, record: dict[str, Any], entry: dict[str, Any]) -> bool:
        """Start a local job in this process if none runs; a cancelled batch's unstarted one ends at once."""
        key = (record["id"], int(entry["job"]["index"]))
        if key in self._local:
            if record.get("cancel_requested"):  # cancelled through another replica
                await self.cancel_job(record["id"], entry)
            return False
        if record.get("cancel_requested"):
            await self._end_local(record, entry, cancelled_rows(entry, []), jobs.CANCELLED)
            return True
        entry["state"] = jobs.RUNNING
        self._local[key] = asyncio.create_task(self._run_local(record["id"], entry, key))
        return True

    async def _run_local(self, batch_id: str, entry: dict[str, Any], key: tuple[str, int]) -> None:
        """Run the lines, then record them; ``key`` stays in ``_local`` until the record says done,
        so no poll starts the job a second time."""
        try:
            rows, state = await self._local_rows(batch_id, entry, key)
            async with self.lock(batch_id):
                record = await asyncio.to_thread(self.store.get_batch, batch_id)
                if record is None:
                    return
                fresh = next(e for e in record["jobs"] if e.get("local") and e["job"]["index"] == key[1])
                await self._end_local(record, fresh, rows, state)
                if all(e["done"] for e in record["jobs"]):
                    await self._finalize(record)
                await asyncio.to_thread(self.store.put_batch, record)
        except Exception:  # e.g. the folder went away: the next poll starts the job again
            log.exception("batch %s: the lines run in the batch lane could not be recorded", batch_id)
        finally:
            self._local.pop(key, None)
            self._cancelled.discard(key)
        self.wake()

    async def _local_rows(
        self, batch_id: str, entry: dict[str, Any], key: tuple[str, int]
    ) -> tuple[list[dict[str, Any]], str]:
        """The rows of every line (all run), or of those that ran and the cancelled rest."""
        rows: list[dict[str, Any]] = []
        self._stoppable.add(key)
        try:
            record = await asyncio.to_thread(self.store.get_batch, batch_id)
            data = await asyncio.to_thread(self._input, record["input_file_id"]) if record else None
            if record is not None:
                await self.run_local(self.runtime.current, record, entry, data, self._emit, rows)
            return rows, jobs.SUCCEEDED
        except asyncio.CancelledError:
            if key not in self._cancelled:
                raise  # the app is stopping: the job runs again after a restart
            return cancelled_rows(entry, rows), jobs.CANCELLED
        finally:
            self._stoppable.discard(key)

    def _input(self, file_id: str) -> bytes | None:
        try:
            return self.store.read_file(file_id)
        except (OSError, ValueError):
            return None  # deleted since: each line becomes an error line

    async def _end_local(
        self, record: dict[str, Any], entry: dict[str, Any], rows: list[dict[str, Any]], state: str
    ) -> None:
        rows = sorted(rows, key=lambda row: row["n"])
        await asyncio.to_thread(self.store.put_job_results, record["id"], int(entry["job"]["index"]), rows)
        counts = record["request_counts"]
        counts["completed"] += sum(1 for r in rows if r["ok"])
        counts["failed"] += sum(1 for r in rows if not r["ok"])
        entry["state"], entry["done"] = state, True

    # --- results ----------------------------------------------------------------------------

    async def _finish_job(self, record: dict[str, Any], entry: dict[str, Any], state: str, op: dict[str, Any]) -> None:
        job = Job.from_record(entry["job"])
        if state == jobs.SUCCEEDED:
            lines = await self._results(job, entry, op)
        else:
            lines = results.not_run(job, state, op.get("error"))
        order = {line.custom_id: line.line for line in job.lines}
        rows = [{"n": order[r.custom_id], "ok": r.ok, "line": r.line} for r in lines]
        await asyncio.to_thread(self.store.put_job_results, record["id"], job.index, rows)
        for result in lines:
            self._account(record, job, result)
        counts = record["request_counts"]
        counts["completed"] += sum(1 for r in lines if r.ok)
        counts["failed"] += sum(1 for r in lines if not r.ok)
        entry["done"] = True

    async def _results(self, job: Job, entry: dict[str, Any], op: dict[str, Any]) -> list[LineResult]:
        output = jobs.output_of(op)
        try:
            if isinstance(output.get("responsesFile"), str):
                key = self.key(job.upstream, entry["key_id"])
                data = await self.client(job.upstream).download(output["responsesFile"], key)
                items, bad = results.file_items(data)
                if bad:
                    log.warning("batch job %s: %d result lines were not JSON", entry["name"], bad)
                found = results.collect(job, items, inline=False)
            else:
                found = results.collect(job, results.inline_items(output), inline=True)
        except UpstreamError as err:
            log.warning("batch job %s: results could not be read: %s", entry["name"], err.message)
            found = {}  # every line becomes a "no result" error line rather than a batch stuck forever
        return results.assemble(job, found, answer_check=self._answer_check)

    def _answer_check(self, line: JobLine, body: dict[str, Any]) -> dict[str, Any]:
        """A task's pinned schema, checked at assembly: its default (``on_invalid = "default"``) or an error line."""
        task = self.config.tasks.get(line.task) if line.task else None
        pinned = task.structured if task else None
        if pinned is None or pinned.validator is None:
            return body
        enforcement = enforce.Enforcement(pinned.validator, line.task, pinned.on_invalid, pinned.default)
        answer = Completion(body=body, usage=Usage())
        problems = enforce.check(answer, enforcement)
        if not problems:
            return body
        if pinned.on_invalid == "default" and pinned.validator.is_valid(pinned.default):
            return enforce.default_completion(answer, pinned.default).body
        if enforce.cut_short(answer, enforcement):  # as online: its finish_reason says why (length, content_filter)
            return body
        raise LineRejected(
            "the model's answer did not match the task's JSON schema: " + "; ".join(problems),
            code="schema_validation_failed",
            status=502,
        )

    def _account(self, record: dict[str, Any], job: Job, result: LineResult) -> None:
        """One access-log line per batch request, at the batch price, charged to the team."""
        line = result.line
        response = line.get("response") or {}
        entry = next((jl for jl in job.lines if jl.custom_id == result.custom_id), None)
        rec = RequestRecord(request_id=str(response.get("request_id") or line.get("id")), endpoint=record["endpoint"])
        # latency_ms: from the batch's creation to this result (the turnaround a client saw).
        rec.started -= max(0.0, time.time() - float(record.get("created_at") or time.time()))
        rec.team_id = record.get("team")
        rec.task_type = entry.task if entry else None
        rec.model_requested = entry.public_model if entry else None
        rec.upstream, rec.model_used, rec.lane = job.upstream, job.model, LANE
        rec.usage = result.usage or Usage()
        rec.status_code = int(response.get("status_code") or 500) if response else 500
        if not result.ok:
            error = (response.get("body") or {}).get("error") or line.get("error") or {}
            rec.error_type = str(error.get("code") or f"http_{rec.status_code}")
        rec.batch_id, rec.custom_id = record["id"], result.custom_id
        rec.price_factor = self.config.batch.price_factor
        self._emit(rec)

    def _emit(self, rec: RequestRecord) -> None:
        """The request's log line and metrics, and its cost charged to the team's budget."""
        out = self.telemetry.emit(rec, self.config)
        cost = out.get("cost_usd")
        if rec.team_id is not None and cost:
            self.meter.charge(rec.team_id, float(cost))

    async def _finalize(self, record: dict[str, Any]) -> None:
        """Every job has ended: write the output and error files (input order), set the final status."""
        record["status"], record["finalizing_at"] = "finalizing", int(time.time())
        rows: list[dict[str, Any]] = []
        for entry in record["jobs"]:
            rows += await asyncio.to_thread(self.store.job_results, record["id"], entry["job"]["index"])
        ok, failed = split_rows(rows)
        team = record.get("team")
        if ok:
            meta = await asyncio.to_thread(
                self.store.put_file, team, f"{record['id']}_output.jsonl", "batch_output", jsonl(ok)
            )
            record["output_file_id"] = meta["id"]
        if failed:
            meta = await asyncio.to_thread(
                self.store.put_file, team, f"{record['id']}_error.jsonl", "batch_output", jsonl(failed)
            )
            record["error_file_id"] = meta["id"]
        record["usage"] = usage_of_rows(rows)
        states = [entry["state"] for entry in record["jobs"]]
        status = jobs.openai_status(states, cancel_requested=bool(record.get("cancel_requested")))
        record["status"], record[_FINAL_AT[status]] = status, int(time.time())
