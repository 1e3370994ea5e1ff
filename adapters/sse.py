"""Server-sent events split out of an aiohttp response body, without line-length limits.

aiohttp's line iterator refuses lines over 64 KiB, and a Gemini event carrying an image or a
long tool call can be larger; both transports read raw chunks and split here instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


async def events(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yield the payload of each ``data:`` field as it arrives (events joined per the spec)."""
    buf = b""
    data: list[bytes] = []
    async for chunk in resp.content.iter_any():
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line = buf[:nl]
            buf = buf[nl + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            # comments (":...") and other fields (event:, id:, retry:) carry nothing we use
    if buf.startswith(b"data:"):
        data.append(buf[6:] if buf[5:6] == b" " else buf[5:])
    if data:
        yield b"\n".join(data)
