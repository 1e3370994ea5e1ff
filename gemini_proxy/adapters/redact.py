"""Key redaction: the one place that knows what a secret looks like in text.

Upstream error bodies sometimes echo the request URL (with ``?key=``) or the key itself, and
exceptions carry URLs; everything that leaves an adapter or reaches a log passes through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# `key=...` in query strings, `x-goog-api-key: ...` / `Authorization: Bearer ...` in dumps.
_PATTERNS = (
    re.compile(r"([?&]key=)[^&\s\"']+", re.IGNORECASE),
    re.compile(r"((?:x-goog-api-key|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    # Passwords in URLs (redis://:password@host, https://user:password@host).
    re.compile(r"(://[^/\s:@]*:)[^@\s/]+(?=@)"),
    # Google API keys and OpenAI-style secret keys, wherever they appear.
    re.compile(r"()AIza[0-9A-Za-z_-]{20,}"),
    re.compile(r"()sk-[A-Za-z0-9_-]{16,}"),
)

REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secrets and anything shaped like a key from ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text
