"""Native Gemini (generativelanguage REST, and Vertex AI's form of it): pure translation plus a thin transport."""

from gemini_proxy.adapters.gemini.adapter import CAPABILITIES, GeminiAdapter

__all__ = ["CAPABILITIES", "GeminiAdapter"]
