"""gemini-proxy: an OpenAI-compatible gateway in front of Gemini and OpenAI-compatible upstreams."""

__version__ = "0.1.0"
