"""gemini-proxy's package (issue 17 moves ``proxy/`` and ``adapters/`` here); only ``batch`` lives here so far."""
