"""Tool-call ids that carry what Gemini needs back, through clients that keep only the id.

OpenAI clients keep a tool call's ``id`` and send it back on the assistant turn and on the
tool result, but drop every field they do not know. Gemini 3 needs two things back that only it
knows: its own ``functionCall.id`` (matched against ``functionResponse.id``) and the part's
``thoughtSignature`` (400 without it). So the id we hand out carries both:
``"call_x" + base64url(json([gemini_id, signature, tag]))``. Models that give neither (2.5
without thinking) get ``"call_" + 24 hex chars`` (never starting with ``x``).

Ids are derived deterministically from the upstream's ``responseId``, the candidate and the
call's position, so the same upstream answer streamed or not yields the same ids, and two calls
in one answer (parallel calls to the same function) never collide.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import orjson

CARRIER = "call_x"


def _tag(seed: str) -> str:
    return hashlib.blake2b(seed.encode(), digest_size=12).hexdigest()


def make_tool_call_id(gemini_id: str | None, signature: str | None, seed: str) -> str:
    """The OpenAI id for one Gemini functionCall; ``seed`` is "responseId:candidate:position"."""
    if not gemini_id and not signature:
        return "call_" + _tag(seed)
    # Gemini's own id is unique; a signature-only call (2.5 thinking) gets a tag to stay unique.
    packed = orjson.dumps([gemini_id, signature] if gemini_id else [None, signature, _tag(seed)[:8]])
    return CARRIER + base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def parse_tool_call_id(call_id: str) -> tuple[str | None, str | None]:
    """Return (gemini_id, thought_signature) carried by an id we minted, else (None, None)."""
    if not call_id.startswith(CARRIER):
        return None, None
    raw = call_id[len(CARRIER) :]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None, None
    if not isinstance(data, list) or len(data) < 2:
        return None, None
    gid, sig = data[0], data[1]
    return (gid if isinstance(gid, str) else None, sig if isinstance(sig, str) else None)
