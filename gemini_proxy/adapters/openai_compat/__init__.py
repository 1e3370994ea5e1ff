"""OpenAI-compatible upstreams (gateways, unified access layers): passthrough with key swap."""

from gemini_proxy.adapters.openai_compat.transport import CAPABILITIES, OpenAIAdapter

__all__ = ["CAPABILITIES", "OpenAIAdapter"]
