"""Whatever JSON a client sends, the answer is a 2xx or an OpenAI-shaped 4xx: never a 5xx or a traceback."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SyncStack
from tests.helpers import assert_openai_error

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "bogus"]) | json_values},
    optional={"content": st.text(max_size=20) | json_values, "name": json_values},
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["fast", "cn", "pro", "summary", "google:gemini-2.5-flash", "nope"]) | json_values,
        "messages": st.lists(message, max_size=3) | json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values})
        | json_values,
        "temperature": json_values,
        "max_tokens": json_values,
        "stop": json_values,
        "n": json_values,
        "response_format": json_values,
        "tools": json_values,
        "extra_field": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_random_bodies_never_get_a_5xx(sync_stack: SyncStack, body: dict[str, Any]) -> None:
    with httpx.Client(timeout=20) as client:
        resp = client.post(sync_stack.base_url + "/chat/completions", content=orjson.dumps(body))
    assert resp.status_code < 500, (resp.status_code, resp.text, body)
    assert resp.headers["x-request-id"]
    if resp.status_code >= 400:
        assert_openai_error(resp.json())
