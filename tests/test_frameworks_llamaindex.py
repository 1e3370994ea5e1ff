"""LlamaIndex's OpenAILike against the proxy: chat, stream, tool call, structured prediction."""

from __future__ import annotations

import contextlib
import io

from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike
from pydantic import BaseModel

from gemini_proxy.adapters.gemini.translate import parse_tool_call_id
from tests.conftest import Proxy, SyncStack
from tests.fakes.gemini import FakeGemini, text_answer
from tests.frameworks import README_BASE_URL, function_call_answer, readme_snippets


def _llm(proxy: Proxy, model: str = "fast", **kw: object) -> OpenAILike:
    return OpenAILike(
        model=model,
        api_base=proxy.base_url,
        api_key="client-key-unused",
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=1_000_000,
        max_retries=0,
        **kw,
    )


async def test_chat_returns_gemini_text(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("LlamaIndex hello"))
    reply = await _llm(proxy).achat(
        [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
    )
    assert reply.message.content == "LlamaIndex hello"
    sent = fake_gemini.requests[0]["body"]
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


async def test_stream_chat_yields_deltas(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    stream = await _llm(proxy).astream_chat([ChatMessage(role="user", content="Stream it")])
    deltas = [part.delta async for part in stream]
    assert "".join(d or "" for d in deltas) == "Hello from the simulated gemini-2.5-flash. You said: Stream it"
    assert len([d for d in deltas if d]) > 1


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


async def test_tool_call_round_trip_on_gemini_3(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        function_call_answer("multiply", {"a": 6, "b": 7}, call_id="fc-mul", signature="c2lnLW11bA=="),
        text_answer("6 times 7 is 42."),
    )
    llm = _llm(proxy, "g3")
    tool = FunctionTool.from_defaults(fn=multiply)
    response = await llm.achat_with_tools([tool], chat_history=[ChatMessage(role="user", content="6*7?")])
    calls = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    assert (calls[0].tool_name, calls[0].tool_kwargs) == ("multiply", {"a": 6, "b": 7})
    assert parse_tool_call_id(calls[0].tool_id) == ("fc-mul", "c2lnLW11bA==")
    history = [
        ChatMessage(role="user", content="6*7?"),
        response.message,
        ChatMessage(
            role="tool",
            content=str(tool(**calls[0].tool_kwargs)),
            additional_kwargs={"tool_call_id": calls[0].tool_id, "name": "multiply"},
        ),
    ]
    final = await llm.achat(history)
    assert final.message.content == "6 times 7 is 42."
    replay = fake_gemini.requests[1]["body"]["contents"]
    assert replay[1]["parts"][0]["thoughtSignature"] == "c2lnLW11bA=="
    assert replay[2]["parts"][0]["functionResponse"] == {"id": "fc-mul", "name": "multiply", "response": {"output": 42}}


class City(BaseModel):
    name: str
    country: str


async def test_structured_predict_returns_pydantic_object(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(
        function_call_answer("City", {"name": "Lyon", "country": "France"}, call_id="fc-c", signature="c2ln")
    )
    city = await _llm(proxy, "g3").astructured_predict(
        City, PromptTemplate("Name a city in {country}."), country="France"
    )
    assert city == City(name="Lyon", country="France")
    decls = fake_gemini.requests[0]["body"]["tools"][0]["functionDeclarations"]
    assert decls[0]["name"] == "City"


def test_readme_llamaindex_snippet_runs(sync_stack: SyncStack) -> None:
    snippets = readme_snippets("frameworks", "LlamaIndex")
    assert snippets, "the README's LlamaIndex section has no python snippet"
    out = io.StringIO()
    for code in snippets:
        assert README_BASE_URL in code
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace(README_BASE_URL, sync_stack.base_url), "README.md", "exec"), {})
    assert "You said: Hello from LlamaIndex" in out.getvalue()
    assert "You said: Stream this" in out.getvalue()
    assert {r["model"] for r in sync_stack.gemini.requests} == {"gemini-2.5-flash"}


def test_llamaindex_openai_class_refuses_alias_names_so_readme_recommends_openailike() -> None:
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model="fast", api_base="http://127.0.0.1:9/v1", api_key="client-key-unused", max_retries=0)
    try:
        llm.metadata  # noqa: B018 - the property is what validates the name
    except ValueError as exc:
        assert "Unknown model 'fast'" in str(exc)
    else:  # a LlamaIndex release that accepts custom names: the README's advice needs updating
        raise AssertionError("llama_index.llms.openai.OpenAI now accepts alias names; update the README")
