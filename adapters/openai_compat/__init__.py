"""OpenAI-compatible upstreams (gateways, unified access layers): passthrough with key swap."""

from adapters.openai_compat.transport import OpenAIAdapter

__all__ = ["OpenAIAdapter"]
