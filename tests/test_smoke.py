"""End-to-end smoke: the real OpenAI SDK, through the proxy, to each fake upstream kind."""

from __future__ import annotations

from openai.types.chat import ChatCompletion

from tests.conftest import GATEWAY_KEY, GEMINI_KEY, Proxy, SyncStack
from tests.fakes.gemini import FakeGemini, text_answer
from tests.fakes.openai import FakeOpenAI


async def test_async_sdk_gets_gemini_answer_through_alias(proxy: Proxy, fake_gemini: FakeGemini) -> None:
    fake_gemini.push(text_answer("Bonjour", prompt_tokens=7, output_tokens=3))
    reply = await proxy.client().chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}])
    assert isinstance(reply, ChatCompletion)
    assert reply.choices[0].message.content == "Bonjour"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, 3)
    sent = fake_gemini.requests[0]
    assert (sent["model"], sent["method"], sent["key"]) == ("gemini-2.5-flash", "generateContent", GEMINI_KEY)
    assert sent["body"]["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


async def test_passthrough_swaps_key_and_rewrites_model(proxy: Proxy, fake_openai: FakeOpenAI) -> None:
    reply = await proxy.client(api_key="client-secret-xyz").chat.completions.create(
        model="cn", messages=[{"role": "user", "content": "Hi"}], extra_body={"vendor_flag": True}
    )
    assert reply.choices[0].message.content == "Hello from the fake gateway."
    sent = fake_openai.requests[0]
    assert sent["headers"]["Authorization"] == f"Bearer {GATEWAY_KEY}"
    assert sent["body"]["model"] == "gemini-2.5-flash"
    assert sent["body"]["vendor_flag"] is True


def test_sync_sdk_streams_through_proxy(sync_stack: SyncStack) -> None:
    stream = sync_stack.client().chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "Hello stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "You said: Hello stream" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
