"""``/v1/batches``: OpenAI's Batch API (create, list, retrieve, cancel) over Gemini's Batch API.

The handlers own the OpenAI surface; validation, routing and submission are
:mod:`gemini_proxy.http.batch_create`, polling and the output files
:mod:`gemini_proxy.http.batch_poll`. A batch belongs to the team that created it: another team
gets the same 404 as for a batch that does not exist.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gemini_proxy.batch.store import public_batch
from gemini_proxy.errors import InvalidRequest, NotFound
from gemini_proxy.http import batch_create
from gemini_proxy.http.appkeys import BATCHES, METER, RUNTIME, TEAM
from gemini_proxy.http.auth import team_of
from gemini_proxy.http.body import read_json

MAX_LIMIT = 100  # OpenAI: limit between 1 and 100, default 20
_CANCELLABLE = ("validating", "in_progress")


async def _owned(request: web.Request) -> dict[str, Any]:
    batch_id = request.match_info["batch_id"]
    record = await request.app[BATCHES].io(request.app[BATCHES].store.get_batch, batch_id)
    if record is None or record.get("team") != team_of(request):
        raise NotFound(f"No such Batch object: {batch_id}", code="batch_not_found", param="batch_id")
    return record


async def create(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME].current
    body = await read_json(request, rt.config.server)
    record = await batch_create.create(rt, request.app[BATCHES], request.app[METER], request.get(TEAM), body)
    return web.json_response(public_batch(record))


async def retrieve(request: web.Request) -> web.Response:
    return web.json_response(public_batch(await _owned(request)))


async def list_batches(request: web.Request) -> web.Response:
    """Newest first; ``after`` is the last id of the previous page, as the SDK's pager sends it."""
    raw = request.query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(
            f"'limit' must be an integer between 1 and {MAX_LIMIT}.", code="invalid_value", param="limit"
        )
    limit, after = int(raw), request.query.get("after")
    records = await request.app[BATCHES].io(request.app[BATCHES].store.list_batches, team_of(request))
    if after:
        ids = [r["id"] for r in records]
        records = records[ids.index(after) + 1 :] if after in ids else []
    page = records[:limit]
    data = [public_batch(r) for r in page]
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(records) > limit,
        }
    )


async def cancel(request: web.Request) -> web.Response:
    runner = request.app[BATCHES]
    batch_id = request.match_info["batch_id"]
    await _owned(request)
    changed = False

    def cancelling(record: dict[str, Any]) -> bool:
        nonlocal changed
        if record["status"] in _CANCELLABLE:
            record.update(status="cancelling", cancelling_at=int(time.time()), cancel_requested=True)
            changed = True
        return changed

    async with runner.lock(batch_id):
        # Read, change and write under the record's lock: a poller on another worker may have
        # written a newer record (jobs done) since this one was read for the ownership check.
        record = await runner.io(runner.store.update_batch, batch_id, cancelling)
        if record is None:
            record = await _owned(request)  # deleted meanwhile: the same 404 as an unknown id
        if not changed:
            if record["status"] in ("cancelling", "cancelled"):
                return web.json_response(public_batch(record))
            raise InvalidRequest(
                f"Cannot cancel a batch with status '{record['status']}'.", code="batch_not_cancellable", status=409
            )
        for entry in record["jobs"]:
            if not entry["done"]:
                await runner.cancel_job(batch_id, entry)
    runner.wake()
    return web.json_response(public_batch(record))
