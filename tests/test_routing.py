"""Route resolution: x-task header > alias > task name as model > literal (when allowed) > 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from gemini_proxy.config import Target
from gemini_proxy.errors import InvalidRequest, NotFound
from gemini_proxy.routing.resolve import resolve
from tests.conftest import Proxy, config_toml, make_config
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI

CONFIG = make_config(config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1"))
STRICT = make_config(
    config_toml("http://127.0.0.1:9", "http://127.0.0.1:9/v1").replace(
        "allow_literal_targets = true", "allow_literal_targets = false"
    )
)
HI = [{"role": "user", "content": "Hi"}]


def test_task_header_wins_over_model() -> None:
    route = resolve(CONFIG, "pro", "summary")
    assert (route.kind, route.task, route.targets[0]) == ("task", "summary", Target("google", "gemini-2.5-flash"))


def test_alias_resolves_to_target_then_fallbacks() -> None:
    route = resolve(CONFIG, "fast", None)
    assert [str(t) for t in route.targets] == [
        "google:gemini-2.5-flash",
        "google:gemini-2.5-flash-lite",
        "gateway:gemini-2.5-flash",
    ]


def test_task_name_works_as_model() -> None:
    route = resolve(CONFIG, "classification", None)
    assert (route.kind, route.task, route.targets) == (
        "task",
        "classification",
        (Target("google", "gemini-2.5-flash-lite"),),
    )


def test_literal_target_only_when_allowed() -> None:
    assert resolve(CONFIG, "google:gemini-2.0-flash", None).targets == (Target("google", "gemini-2.0-flash"),)
    with pytest.raises(NotFound) as info:
        resolve(STRICT, "google:gemini-2.0-flash", None)
    assert info.value.code == "model_not_found"


def test_literal_with_unknown_upstream_is_not_found() -> None:
    with pytest.raises(NotFound):
        resolve(CONFIG, "elsewhere:gemini-2.0-flash", None)


def test_unknown_model_lists_what_is_available() -> None:
    with pytest.raises(NotFound) as info:
        resolve(CONFIG, "gpt-4o", None)
    assert info.value.code == "model_not_found" and info.value.param == "model"
    for name in ("fast", "pro", "g3", "cn", "summary", "classification"):
        assert name in info.value.message


def test_unknown_task_header_is_not_found() -> None:
    with pytest.raises(NotFound) as info:
        resolve(CONFIG, "fast", "poetry")
    assert info.value.code == "task_not_found" and "summary" in info.value.message


def test_missing_model_without_task_is_a_bad_request() -> None:
    with pytest.raises(InvalidRequest):
        resolve(CONFIG, None, None)


# --- the same through the HTTP surface, with the real SDK ---------------------------------------


@pytest.mark.parametrize(
    ("model", "headers", "upstream", "used"),
    [
        ("pro", {"x-task": "summary"}, "google", "gemini-2.5-flash"),
        ("pro", {}, "google", "gemini-2.5-pro"),
        ("classification", {}, "google", "gemini-2.5-flash-lite"),
        ("google:gemini-2.0-flash", {}, "google", "gemini-2.0-flash"),
        ("cn", {}, "gateway", "gemini-2.5-flash"),
    ],
)
async def test_sdk_request_is_served_by_the_resolved_target(
    proxy: Proxy,
    fake_gemini: FakeGemini,
    fake_openai: FakeOpenAI,
    model: str,
    headers: dict[str, str],
    upstream: str,
    used: str,
) -> None:
    raw = await proxy.client().chat.completions.with_raw_response.create(
        model=model, messages=HI, extra_headers=headers
    )
    assert raw.parse().choices[0].message.content
    assert (raw.headers["x-upstream-used"], raw.headers["x-model-used"]) == (upstream, used)
    seen = fake_gemini.requests[0]["model"] if upstream == "google" else fake_openai.bodies[0]["model"]
    assert seen == used


async def test_sdk_unknown_model_gets_404_model_not_found(proxy: Proxy) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await proxy.client().chat.completions.create(model="gpt-4o", messages=HI)
    assert info.value.code == "model_not_found" and "fast" in info.value.message


async def test_sdk_unknown_task_gets_404_task_not_found(proxy: Proxy) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await proxy.client().chat.completions.create(model="fast", messages=HI, extra_headers={"x-task": "poetry"})
    assert info.value.code == "task_not_found" and info.value.param == "x-task"


async def test_literal_refused_when_config_disallows(start_proxy: Callable[..., Any]) -> None:
    proxy = await start_proxy(config=STRICT)
    with pytest.raises(openai.NotFoundError) as info:
        await proxy.client().chat.completions.create(model="google:gemini-2.5-flash", messages=HI)
    assert info.value.code == "model_not_found"
