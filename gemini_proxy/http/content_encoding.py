"""Compressed request bodies (``Content-Encoding``), decoded with the size limit on the *decoded* bytes.

Why the proxy decodes them itself (``auto_decompress=False`` in gemini_proxy/http/app.py): aiohttp's own
decoding raises ``ContentEncodingError`` from deep inside ``request.read()`` on a body that is
not what its header says, which reached clients as a 500; and the only limit it knows is on the
bytes it has buffered. Here, each coding is undone by a streaming decompressor that is never
asked for more than ``max_body_bytes + 1`` bytes, so a 1 MB body that would inflate to 100 MB
costs at most the limit in memory and is a 413 as soon as it passes it.

    gzip, x-gzip, deflate (zlib or raw), identity    decoded (several, in reverse order of listing)
    br, zstd, compress, anything else                415 unsupported_content_encoding
    bytes that do not decode, or a truncated stream   400 invalid_content_encoding

``br`` and ``zstd`` are refused rather than decoded because no maintained decoder ships with the
proxy's dependencies (Brotli would be a new C extension; ``compression.zstd`` needs Python 3.14).
"""

from __future__ import annotations

import zlib

from gemini_proxy.errors import InvalidRequest, PayloadTooLarge

SUPPORTED = ("gzip", "deflate", "identity")
_ALIASES = {"x-gzip": "gzip"}
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer


def decode(raw: bytes, header: str | None, limit: int) -> bytes:
    """``raw`` with every coding of ``header`` undone; raises 400/413/415 as in the module docstring."""
    if not header:
        return raw
    codings = [_ALIASES.get(c, c) for c in (part.strip().lower() for part in header.split(",")) if c]
    unsupported = [c for c in codings if c not in SUPPORTED]
    if unsupported:
        raise InvalidRequest(
            f"Content-Encoding {unsupported[0]!r} is not supported; send the body as "
            f"{', '.join(SUPPORTED[:-1])} or uncompressed",
            code="unsupported_content_encoding",
            status=415,
        )
    body = raw
    for coding in reversed(codings):  # the last coding listed was applied last
        if coding != "identity" and body:
            body = _inflate(body, coding, limit)
    return body


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    # RFC 9110 "deflate" is the zlib format, but many clients send raw deflate: the first byte
    # tells them apart (a zlib header's low nibble is 8), as aiohttp and browsers do.
    if coding == "gzip":
        wbits = _GZIP_WBITS
    else:
        wbits = zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
    out = bytearray()
    inflater = zlib.decompressobj(wbits)
    pending = data
    try:
        while True:
            out += inflater.decompress(pending, limit + 1 - len(out))  # never more than the limit + 1
            if len(out) > limit:
                raise PayloadTooLarge(
                    f"request body is larger than the limit of {limit} bytes once decoded (Content-Encoding: {coding})"
                )
            if inflater.eof:
                pending = inflater.unused_data
                if not pending:
                    return bytes(out)
                if coding != "gzip":
                    raise zlib.error("data after the end of the deflate stream")
                inflater = zlib.decompressobj(wbits)  # gzip allows several members back to back
                continue
            pending = inflater.unconsumed_tail
            if not pending:
                raise zlib.error("the compressed stream ends early")
    except zlib.error as exc:
        raise InvalidRequest(
            f"the request body is not valid {coding} data (Content-Encoding: {coding}): {exc}",
            code="invalid_content_encoding",
        ) from None
