"""Native Gemini (generativelanguage REST): pure translation plus a thin transport."""

from gemini_proxy.adapters.gemini.transport import GeminiAdapter

__all__ = ["GeminiAdapter"]
