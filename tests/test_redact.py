"""The one redaction function every log line, error body and exception message passes through."""

from __future__ import annotations

import pytest

from gemini_proxy.adapters.redact import REDACTED, redact

SECRET = "made-up-secret-value-0042"


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"GET https://generativelanguage.googleapis.com/v1beta/models/x?key={SECRET}&alt=sse", SECRET),
        (f"x-goog-api-key: {SECRET}", SECRET),
        (f"Authorization: Bearer {SECRET}", SECRET),
        ("redis://:redis-pass-not-real@redis:6379/0", "redis-pass-not-real"),
        ("https://user:url-pass-not-real@gateway.internal/v1", "url-pass-not-real"),
    ],
)
def test_secrets_in_urls_headers_and_messages_are_redacted(text: str, gone: str) -> None:
    out = redact(text)
    assert gone not in out and REDACTED in out


def test_a_known_secret_is_redacted_wherever_it_appears() -> None:
    assert redact(f"upstream said: bad key {SECRET}.", (SECRET,)) == f"upstream said: bad key {REDACTED}."


def test_text_without_secrets_is_left_alone() -> None:
    text = "http://127.0.0.1:8080/v1/chat/completions returned 503 (model overloaded)"
    assert redact(text) == text
