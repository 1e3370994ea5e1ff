"""Upstream adapters. ``ADAPTERS`` is the only registry: kind name -> adapter class.

Nothing else in the code compares upstream kinds as strings; adding a kind means adding a
module and one line here.
"""

from collections.abc import Callable, Mapping

from gemini_proxy.adapters.base import Adapter, Upstream
from gemini_proxy.adapters.gemini import GeminiAdapter
from gemini_proxy.adapters.openai_compat import OpenAIAdapter
from gemini_proxy.adapters.vertex import VertexAdapter

ADAPTERS: Mapping[str, Callable[[Upstream], Adapter]] = {
    "gemini": GeminiAdapter,
    "openai": OpenAIAdapter,
    "vertex": VertexAdapter,
}

__all__ = ["ADAPTERS"]
