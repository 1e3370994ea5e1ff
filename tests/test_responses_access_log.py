"""Reads and deletes of stored Responses answers each get one access-log line, named by method
and route template (never the raw path with its id), with the team that made them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from gemini_proxy.routing.teams import hash_client_key
from tests.conftest import Proxy, eventually
from tests.fakes.gemini import FakeGemini, text_answer

KEY = "responses-log-client-key-not-real"
TEAMS = f"""
[teams.audit]
key_sha256 = ["{hash_client_key(KEY)}"]
"""


async def test_get_and_delete_of_a_stored_response_are_logged_once_each(
    start_proxy: Callable[..., Any], fake_gemini: FakeGemini, access_records: list[dict[str, Any]]
) -> None:
    proxy: Proxy = await start_proxy(TEAMS)
    client = proxy.client(api_key=KEY)
    fake_gemini.push(text_answer("kept"))
    reply = await client.responses.create(model="fast", input="keep this")
    await client.responses.retrieve(reply.id)
    await client.responses.input_items.list(reply.id)
    await client.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(reply.id)
    assert await eventually(lambda: len(access_records) == 5)
    seen = [(r["endpoint"], r["status_code"], r["team_id"]) for r in access_records]
    assert seen == [
        ("/v1/responses", 200, "audit"),
        ("GET /v1/responses/{response_id}", 200, "audit"),
        ("GET /v1/responses/{response_id}/input_items", 200, "audit"),
        ("DELETE /v1/responses/{response_id}", 200, "audit"),
        ("GET /v1/responses/{response_id}", 404, "audit"),
    ]
    assert all(reply.id not in str(r) for r in access_records[1:])  # the id is not a log field
    assert access_records[4]["error_type"] == "response_not_found"


async def test_other_reads_stay_out_of_the_access_log(proxy: Proxy, access_records: list[dict[str, Any]]) -> None:
    await proxy.client().models.list()  # the line of a logged request is out before its answer
    assert access_records == []
