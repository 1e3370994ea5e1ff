"""The batch transport (gemini_proxy/batch/gemini_client.py) against the fake Gemini Batch + Files API.

The fake is mounted beside the online FakeGemini on one loopback server, as the wiring phase
will run it; each poll moves a job one scripted state along, so nothing here waits on time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gemini_proxy.adapters.base import Upstream, UpstreamError
from gemini_proxy.adapters.simulated.gemini import embed_answer
from gemini_proxy.batch import gemini_jobs as jobs
from gemini_proxy.batch import gemini_results as results
from gemini_proxy.batch.gemini_client import GeminiBatchClient
from gemini_proxy.batch.gemini_jobs import FILE, INLINE, JobPlan
from gemini_proxy.batch.openai_files import EMBEDDINGS
from tests.fakes.gemini import FakeGemini
from tests.fakes.gemini_batch import CANCELLED, EXPIRED, FAILED, PENDING, RUNNING, SUCCEEDED, FakeGeminiBatch
from tests.test_batch_core import chat, jsonl, planned

KEY = "test-batch-key-not-real-0001"
OTHER_KEY = "test-batch-key-not-real-0002"


@dataclass
class Env:
    fake: FakeGeminiBatch
    client: GeminiBatchClient
    session: aiohttp.ClientSession
    base: str


async def _serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    fake = FakeGeminiBatch()
    app = FakeGemini().app()
    fake.mount(app)
    server = await _serve(app)
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(name="google", kind="gemini", base_url=base, timeout_s=5)
        yield Env(fake, GeminiBatchClient(upstream, session), session, base)
    await server.close()


def _written(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


async def submit(client: GeminiBatchClient, plan: JobPlan, key: str = KEY) -> dict[str, Any]:
    if plan.job.mode == FILE:
        uploaded = await client.upload(plan.payload, key, display_name=plan.job.display_name)
        return await client.create(plan.job.model, plan.create_body(uploaded["name"]), key, method=plan.job.method)
    return await client.create(plan.job.model, plan.create_body(), key, method=plan.job.method)


async def poll(client: GeminiBatchClient, operation: dict[str, Any], key: str = KEY) -> list[dict[str, Any]]:
    seen = [operation]
    for _ in range(10):  # bounded: the fake moves one state per poll
        if jobs.is_terminal(seen[-1]):
            return seen
        seen.append(await client.get(operation["name"], key))
    raise AssertionError(f"job never finished: {[jobs.state_of(op) for op in seen]}")


async def test_inline_jobs_are_created_and_polled_through_their_states_to_results(env: Env) -> None:
    plans = planned(jsonl(chat("a", text="question a"), chat("b", text="question b", model="pro")))
    assert [p.job.mode for p in plans] == [INLINE, INLINE]
    runs = [await poll(env.client, await submit(env.client, plan)) for plan in plans]
    assert [[jobs.state_of(op) for op in run] for run in runs] == [[PENDING, RUNNING, SUCCEEDED]] * 2
    assert jobs.openai_status(jobs.state_of(run[1]) for run in runs) == "in_progress"
    assert jobs.openai_status(jobs.state_of(run[-1]) for run in runs) == "completed"
    assert jobs.stats_of(runs[0][-1])["successfulRequestCount"] == 1
    out = []
    for plan, run in zip(plans, runs, strict=True):
        items = results.inline_items(jobs.output_of(run[-1]))
        out += results.assemble(plan.job, results.collect(plan.job, items, inline=True))
    said = {r.custom_id: r.line["response"]["body"]["choices"][0]["message"]["content"] for r in out}
    assert said == {
        "a": "Hello from the simulated gemini-2.5-flash. You said: question a",
        "b": "Hello from the simulated gemini-2.5-pro. You said: question b",
    }
    assert {c["key"] for c in env.fake.calls} == {KEY}  # every poll used the key that created the job
    # The online fake still answers beside the mounted batch API.
    url = f"{env.base}/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with env.session.post(url, json=body, headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 200


async def test_a_large_job_is_uploaded_and_its_shuffled_results_file_maps_back_by_custom_id(
    env: Env, tmp_path: Path
) -> None:
    env.fake.fail_keys.add("l3")
    [plan] = planned(jsonl(*(chat(f"c{i}", text=f"question {i}") for i in range(1, 7))), inline_max_bytes=1)
    assert plan.job.mode == FILE
    run = await poll(env.client, await submit(env.client, plan))
    start, chunk = env.fake.calls[0], env.fake.calls[1]
    assert start["key"] == KEY and chunk["key"] is None  # the upload URL is the credential for the bytes
    assert chunk["query"]["upload_protocol"] == "resumable"  # rewritten from googleapis.com to the fake
    assert jobs.state_of(run[-1]) == SUCCEEDED and jobs.stats_of(run[-1])["failedRequestCount"] == 1
    name = jobs.output_of(run[-1])["responsesFile"]
    data = await env.client.download(name, KEY)
    items, bad = results.file_items(data)
    assert bad == 0 and [i["key"] for i in items] != [f"l{n}" for n in range(1, 7)]  # really shuffled
    out = results.assemble(plan.job, results.collect(plan.job, items, inline=False))
    for r in out:
        if r.custom_id == "c3":
            assert not r.ok and r.line["response"]["status_code"] == 400
        else:
            said = r.line["response"]["body"]["choices"][0]["message"]["content"]
            assert r.ok and said.endswith(f"You said: question {r.custom_id[1:]}")
    assert results.request_counts(out) == {"total": 6, "completed": 5, "failed": 1}
    with pytest.raises(UpstreamError, match="larger than 10 bytes"):
        await env.client.download(name, KEY, max_bytes=10)
    assert await env.client.download_to(name, KEY, tmp_path / "results.jsonl") == len(data)
    assert _written(tmp_path) == {"results.jsonl": data}  # no .part file left behind
    assert (await env.client.get_file(name, KEY))["source"] == "GENERATED"
    input_name = run[0]["metadata"]["inputConfig"]["fileName"]
    assert await env.client.delete_file(input_name, KEY) == {}


async def test_cancel_expiry_and_failure_end_jobs_without_results(env: Env) -> None:
    [plan] = planned(jsonl(chat("a")))
    created = await submit(env.client, plan)
    assert await env.client.cancel(created["name"], KEY) == {}
    cancelled = await env.client.get(created["name"], KEY)
    assert jobs.state_of(cancelled) == CANCELLED and cancelled["done"] is True and not jobs.output_of(cancelled)
    with pytest.raises(UpstreamError) as again:
        await env.client.cancel(created["name"], KEY)
    assert again.value.status == 400 and again.value.upstream_status == "FAILED_PRECONDITION"
    env.fake.script(PENDING, EXPIRED).script(PENDING, RUNNING, FAILED)
    expired = (await poll(env.client, await submit(env.client, plan)))[-1]
    failed = (await poll(env.client, await submit(env.client, plan)))[-1]
    assert [jobs.state_of(expired), jobs.state_of(failed)] == [EXPIRED, FAILED]
    assert jobs.openai_status([jobs.state_of(expired)]) == "expired"
    assert results.not_run(plan.job, jobs.state_of(expired))[0].line["error"]["code"] == "batch_expired"
    failure = results.not_run(plan.job, jobs.state_of(failed), failed.get("error"))[0].line["error"]
    assert failure["code"] == "batch_failed" and "Internal error" in failure["message"]


async def test_list_pages_through_the_keys_own_jobs(env: Env) -> None:
    [plan] = planned(jsonl(chat("a")))
    names = [(await submit(env.client, plan))["name"] for _ in range(3)]
    await submit(env.client, plan, OTHER_KEY)
    first = await env.client.list_batches(KEY, page_size=2)
    second = await env.client.list_batches(KEY, page_size=2, page_token=first["nextPageToken"])
    assert [op["name"] for op in first["operations"] + second["operations"]] == names
    assert "nextPageToken" not in second
    assert await env.client.delete(names[0], KEY) == {}


async def test_an_embeddings_batch_runs_through_async_batch_embed_content(env: Env) -> None:
    line = {"custom_id": "e", "method": "POST", "url": EMBEDDINGS, "body": {"model": "embed", "input": ["x", "y"]}}
    [plan] = planned(jsonl(line), EMBEDDINGS)
    run = await poll(env.client, await submit(env.client, plan))
    assert run[0]["metadata"]["@type"].endswith("EmbedContentBatch")
    items = results.inline_items(jobs.output_of(run[-1]))
    [out] = results.assemble(plan.job, results.collect(plan.job, items, inline=True))
    vectors = [d["embedding"] for d in out.line["response"]["body"]["data"]]
    reqs = [{"content": {"parts": [{"text": t}]}, "outputDimensionality": None} for t in ("x", "y")]
    expected = [e["values"] for e in embed_answer("gemini-embedding-001", {"requests": reqs})["embeddings"]]
    assert vectors == expected


async def test_refusals_become_upstream_errors_and_never_carry_the_key(env: Env) -> None:
    [plan] = planned(jsonl(chat("a")))
    bad = orjson.dumps({"batch": {"displayName": "x", "inputConfig": {"requests": {"requests": []}}, "mode": 1}})
    with pytest.raises(UpstreamError) as refused:
        await env.client.create(plan.job.model, bad, KEY)
    assert refused.value.status == 400 and 'Unknown name "mode"' in refused.value.message
    created = await submit(env.client, plan)
    with pytest.raises(UpstreamError) as other:
        await env.client.get(created["name"], OTHER_KEY)
    assert other.value.status == 404 and other.value.upstream == "google"
    with pytest.raises(ValueError):
        await env.client.get("batches/../files/x", KEY)

    async def echo(request: web.Request) -> web.Response:  # an upstream that quotes the key back
        key = request.headers["x-goog-api-key"]
        error = {"code": 400, "message": f"API key not valid: {key} (?key={key})", "status": "INVALID_ARGUMENT"}
        return web.json_response({"error": error}, status=400)

    app = web.Application()
    app.router.add_get("/v1beta/batches/{id}", echo)
    server = await _serve(app)
    try:
        upstream = Upstream(name="echo", kind="gemini", base_url=f"http://127.0.0.1:{server.port}", timeout_s=5)
        with pytest.raises(UpstreamError) as echoed:
            await GeminiBatchClient(upstream, env.session).get("batches/abc", KEY)
        assert KEY not in echoed.value.message and "[REDACTED]" in echoed.value.message
    finally:
        await server.close()
    gone = Upstream(name="gone", kind="gemini", base_url=f"http://127.0.0.1:{server.port}", timeout_s=5)
    with pytest.raises(UpstreamError) as unreachable:
        await GeminiBatchClient(gone, env.session).list_batches(KEY)
    assert unreachable.value.connection and KEY not in unreachable.value.message
