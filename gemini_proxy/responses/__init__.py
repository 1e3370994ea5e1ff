"""The OpenAI Responses API as a client-facing dialect over the proxy's one chat-shaped core.

A Responses request is rewritten into a chat-completions body (:func:`to_chat`), served by the
same translation, routing and retries as ``/v1/chat/completions``, and the chat answer is
rewritten back (:func:`from_chat`, or :class:`StreamConverter` for streams). Nothing here does
I/O: the handler owns HTTP, the response store and the retry loop.
"""

from __future__ import annotations

from gemini_proxy.responses.context import Context
from gemini_proxy.responses.request import CHAT_PARAM_NAMES, to_chat
from gemini_proxy.responses.response import build_response, from_chat
from gemini_proxy.responses.stream import StreamConverter, failure_code, sse

__all__ = [
    "CHAT_PARAM_NAMES",
    "Context",
    "StreamConverter",
    "build_response",
    "failure_code",
    "from_chat",
    "sse",
    "to_chat",
]
