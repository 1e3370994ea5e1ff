"""The OpenAI Batch API end to end (issue 22): the real ``openai`` SDK against the proxy, the proxy
against the fake Gemini Batch + Files API (tests/fakes/gemini_batch.py) on loopback.

The fake moves a job one scripted state per poll, and the proxy polls every few milliseconds
(``[batch] poll_s`` in the test config), so a batch finishes within a bounded number of polls
and nothing here waits on wall-clock time beyond those short polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from openai.types import Batch, FileObject
from openai.types.chat import ChatCompletion

from gemini_proxy.http.app import make_app
from tests.conftest import ENV, LogCapture, config_toml, make_config
from tests.fakes.gemini import FakeGemini
from tests.fakes.gemini_batch import CANCELLED, EXPIRED, PENDING, RUNNING, SUCCEEDED, FakeGeminiBatch
from tests.fakes.openai import FakeOpenAI

CHAT = "/v1/chat/completions"
TEAM_KEYS = {"alpha": "alpha-client-key-not-real", "beta": "beta-client-key-not-real"}


def line(custom_id: str, model: str = "fast", text: str = "hello", **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(*items: Any) -> bytes:
    return b"".join((i if isinstance(i, bytes) else orjson.dumps(i)) + b"\n" for i in items)


def batch_toml(folder: Path, *, poll_s: float = 0.005, inline_max_bytes: int | None = None, extra: str = "") -> str:
    inline = f"inline_max_bytes = {inline_max_bytes}" if inline_max_bytes else ""
    return f"""
[batch]
dir = "{folder}"
poll_s = {poll_s}
poll_max_s = {max(poll_s, 0.02)}
{inline}
{extra}
"""


@dataclass
class Stack:
    gemini: FakeGemini
    batch: FakeGeminiBatch
    gateway: FakeOpenAI
    folder: Path
    start: Callable[..., Any]
    proxies: list[tuple[web.Application, Any]]
    clients: list[openai.AsyncOpenAI]

    async def proxy(self, extra: str = "", **batch: Any) -> openai.AsyncOpenAI:
        """A proxy on the shared batch folder, and an SDK client for it (``api_key`` picks the team)."""
        return (await self.proxy_app(extra, **batch))[1]

    async def proxy_app(
        self, extra: str = "", *, api_key: str = "client-key-unused", **batch: Any
    ) -> tuple[web.Application, openai.AsyncOpenAI]:
        text = config_toml(self.gemini.url, self.gateway.url, batch_toml(self.folder, **batch) + extra)
        app = make_app(make_config(text), environ=ENV)
        server = await self.start(app)
        self.proxies.append((app, server))
        return app, self.client(str(server.make_url("")).rstrip("/"), api_key)

    def client(self, url: str, api_key: str) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0)
        self.clients.append(client)
        return client


@pytest.fixture
async def stack(aiohttp_server: Callable[..., Any], tmp_path: Path):
    gemini, batch = FakeGemini(), FakeGeminiBatch()
    app = gemini.app()
    batch.mount(app)
    gemini.url = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    gateway = FakeOpenAI()
    gateway.url = str((await aiohttp_server(gateway.app())).make_url("")).rstrip("/") + "/v1"
    made = Stack(gemini, batch, gateway, tmp_path / "batches", aiohttp_server, [], [])
    yield made
    for client in made.clients:
        await client.close()


async def upload(client: openai.AsyncOpenAI, data: bytes) -> FileObject:
    return await client.files.create(file=("requests.jsonl", data), purpose="batch")


async def finished(client: openai.AsyncOpenAI, batch_id: str, polls: int = 400) -> Batch:
    """Poll batches.retrieve until the batch reaches a final status (bounded)."""
    for _ in range(polls):
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.005)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


async def lines_of(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await client.files.content(file_id)
    return [orjson.loads(raw) for raw in content.content.splitlines() if raw.strip()]


# --- the happy path ----------------------------------------------------------------------------


async def test_a_batch_runs_on_gemini_and_returns_openai_output_lines(stack: Stack) -> None:
    client = await stack.proxy()
    uploaded = await upload(client, jsonl(line("a", text="one"), line("b", text="two")))
    assert FileObject.model_validate(uploaded.model_dump()).purpose == "batch"
    batch = await client.batches.create(input_file_id=uploaded.id, endpoint=CHAT, completion_window="24h")
    assert batch.status == "in_progress" and batch.request_counts and batch.request_counts.total == 2
    done = await finished(client, batch.id)
    assert done.status == "completed", done
    assert done.request_counts and (done.request_counts.completed, done.request_counts.failed) == (2, 0)
    assert done.error_file_id is None
    out = await lines_of(client, done.output_file_id)
    assert [o["custom_id"] for o in out] == ["a", "b"]
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == 200
        ChatCompletion.model_validate(o["response"]["body"])
        assert o["response"]["body"]["model"] == "fast"
    assert len([c for c in stack.batch.calls if c["path"].endswith(":batchGenerateContent")]) == 1
    assert done.usage is not None and done.usage.total_tokens > 0
