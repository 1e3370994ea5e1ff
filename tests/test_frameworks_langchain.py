"""LangChain's ChatOpenAI against the proxy: invoke, stream, tools on Gemini 3, structured output, x-task."""

from __future__ import annotations

import contextlib
import io

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from gemini_proxy.adapters.gemini.translate import parse_tool_call_id
from tests.conftest import Proxy, SyncStack
from tests.fakes.gemini import FakeGemini, text_answer
from tests.frameworks import README_BASE_URL, function_call_answer, readme_snippets


def _llm(proxy: Proxy, model: str = "fast", **kw: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=proxy.base_url, api_key="client-key-unused", model=model, max_retries=0, **kw)


async def test_invoke_returns_gemini_text_and_usage(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("LangChain hello", prompt_tokens=6, output_tokens=2))
    msg = await _llm(proxy).ainvoke("Hi")
    assert msg.content == "LangChain hello"
    assert msg.usage_metadata is not None and msg.usage_metadata["input_tokens"] == 6
    assert fake_gemini.requests[0]["model"] == "gemini-2.5-flash"


async def test_stream_yields_text_in_pieces(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    chunks = [chunk async for chunk in _llm(proxy).astream("Stream please")]
    text = "".join(str(c.content) for c in chunks)
    assert text == "Hello from the simulated gemini-2.5-flash. You said: Stream please"
    assert sum(1 for c in chunks if c.content) > 1
    assert fake_gemini.requests[0]["method"] == "streamGenerateContent"


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"21 degrees and sunny in {city}"


async def test_tool_round_trip_on_gemini_3_keeps_thought_signature(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        function_call_answer("get_weather", {"city": "Paris"}, call_id="fc-paris", signature="c2lnLXBhcmlz"),
        text_answer("It is 21 degrees in Paris."),
    )
    llm = _llm(proxy, "g3").bind_tools([get_weather])
    history: list = [HumanMessage("Weather in Paris?")]
    ai = await llm.ainvoke(history)
    assert [c["name"] for c in ai.tool_calls] == ["get_weather"]
    call = ai.tool_calls[0]
    assert call["args"] == {"city": "Paris"}
    assert parse_tool_call_id(call["id"]) == ("fc-paris", "c2lnLXBhcmlz")
    history += [ai, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = await llm.ainvoke(history)
    assert final.content == "It is 21 degrees in Paris."
    # The strict fake accepted the history: the signature and the id came back on the replayed call.
    replay = fake_gemini.requests[1]["body"]["contents"]
    model_part = replay[1]["parts"][0]
    assert model_part["thoughtSignature"] == "c2lnLXBhcmlz"
    assert model_part["functionCall"]["id"] == "fc-paris"
    assert replay[2]["parts"][0]["functionResponse"]["id"] == "fc-paris"


class Person(BaseModel):
    name: str
    age: int


async def test_with_structured_output_default_json_schema(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer('{"name": "Ada", "age": 36}'))
    structured = _llm(proxy, "pro").with_structured_output(Person)  # LangChain's default: method="json_schema"
    person = await structured.ainvoke("Who wrote the first program?")
    assert person == Person(name="Ada", age=36)
    gen = fake_gemini.requests[0]["body"]["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert set(gen["responseJsonSchema"]["properties"]) == {"name", "age"}


async def test_with_structured_output_function_calling(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(function_call_answer("Person", {"name": "Grace", "age": 85}, call_id="fc-1", signature="c2ln"))
    structured = _llm(proxy, "g3").with_structured_output(Person, method="function_calling")
    assert await structured.ainvoke("Who found the first bug?") == Person(name="Grace", age=85)
    config = fake_gemini.requests[0]["body"]["toolConfig"]["functionCallingConfig"]
    assert config["mode"] == "ANY" and config["allowedFunctionNames"] == ["Person"]


async def test_default_headers_x_task_picks_the_task_route(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    llm = _llm(proxy, "fast", default_headers={"x-task": "classification"})
    await llm.ainvoke("label: spam or ham?")
    assert fake_gemini.requests[0]["model"] == "gemini-2.5-flash-lite"


def test_readme_langchain_snippets_run(sync_stack: SyncStack) -> None:
    snippets = readme_snippets("frameworks", "LangChain")
    assert snippets, "the README's LangChain section has no python snippet"
    out = io.StringIO()
    for code in snippets:
        assert README_BASE_URL in code
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace(README_BASE_URL, sync_stack.base_url), "README.md", "exec"), {})
    assert "You said:" in out.getvalue()
    assert {r["model"] for r in sync_stack.gemini.requests} == {"gemini-2.5-flash"}
    assert any(r["method"] == "streamGenerateContent" for r in sync_stack.gemini.requests)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
