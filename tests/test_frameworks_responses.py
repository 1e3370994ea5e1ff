"""Responses API clients beyond the bare SDK, against the proxy and the strict fake Gemini: the
OpenAI Agents SDK (Responses by default) and LangChain's ChatOpenAI(use_responses_api=True)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.conftest import Proxy
from tests.fakes.gemini import FakeGemini, text_answer
from tests.frameworks import function_call_answer


@pytest.fixture
def no_tracing() -> Iterator[None]:
    """The Agents SDK uploads traces to OpenAI by default: tests never reach the network."""
    set_tracing_disabled(True)
    yield


@function_tool
def city_weather(city: str) -> str:
    """Current weather for a city."""
    return f"4 degrees and windy in {city}"


@pytest.mark.usefixtures("no_tracing")
async def test_an_agents_sdk_agent_runs_its_function_tool_to_completion_on_gemini_3(
    proxy: Proxy, fake_gemini: FakeGemini
) -> None:
    fake_gemini.push(
        function_call_answer("city_weather", {"city": "Oslo"}, call_id="fc-oslo", signature="c2lnLW9zbG8="),
        text_answer("Oslo: 4 degrees and windy."),
    )
    agent = Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        tools=[city_weather],
        model=OpenAIResponsesModel(model="g3", openai_client=proxy.client()),
    )
    result = await Runner.run(agent, "What is the weather in Oslo?")
    assert result.final_output == "Oslo: 4 degrees and windy."
    assert fake_gemini.attempts == 2
    second = fake_gemini.bodies[1]
    assert second["systemInstruction"]["parts"] == [{"text": "Answer with the weather tool."}]
    model_turn, tool_turn = second["contents"][1], second["contents"][2]
    assert model_turn["parts"][0]["thoughtSignature"] == "c2lnLW9zbG8="
    assert model_turn["parts"][0]["functionCall"]["id"] == "fc-oslo"
    response = tool_turn["parts"][0]["functionResponse"]
    assert response["id"] == "fc-oslo" and "4 degrees and windy in Oslo" in str(response["response"])


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"21 degrees and sunny in {city}"


def _llm(proxy: Proxy, model: str = "fast") -> ChatOpenAI:
    return ChatOpenAI(
        base_url=proxy.base_url, api_key="client-key-unused", model=model, max_retries=0, use_responses_api=True
    )


async def test_langchain_with_the_responses_api_invokes(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("Responses via LangChain", prompt_tokens=6, output_tokens=3))
    msg = await _llm(proxy).ainvoke("Hi")
    assert msg.text == "Responses via LangChain"
    assert msg.usage_metadata is not None
    assert (msg.usage_metadata["input_tokens"], msg.usage_metadata["output_tokens"]) == (6, 3)


async def test_langchain_with_the_responses_api_calls_a_tool_on_gemini_3(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        function_call_answer("get_weather", {"city": "Paris"}, call_id="fc-paris", signature="c2lnLXBhcmlz"),
        text_answer("It is 21 degrees in Paris."),
    )
    llm = _llm(proxy, "g3").bind_tools([get_weather])
    history: list = [HumanMessage("Weather in Paris?")]
    ai = await llm.ainvoke(history)
    assert [(c["name"], c["args"]) for c in ai.tool_calls] == [("get_weather", {"city": "Paris"})]
    call = ai.tool_calls[0]
    history += [ai, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = await llm.ainvoke(history)
    assert final.text == "It is 21 degrees in Paris."
    model_turn = fake_gemini.bodies[1]["contents"][1]["parts"][0]
    assert model_turn["thoughtSignature"] == "c2lnLXBhcmlz"
