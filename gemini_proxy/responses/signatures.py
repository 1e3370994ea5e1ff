"""The ``encrypted_content`` of our reasoning items: Gemini thought signatures, carried by the client.

Gemini 3 refuses a tool-call turn sent back without the thought signature it issued, and wants
its own call ids back. The chat core already hides both inside the tool-call id
(:mod:`gemini_proxy.adapters.gemini.ids`), which reaches us again as the ``call_id`` of echoed
``function_call`` items. Stateless Responses clients (``store: false``, full history each turn,
as Codex runs) also echo ``reasoning`` items verbatim, so these carry the same facts a second
time, for clients or frameworks that rewrite call ids.

Format: ``"gp1." + base64url(json({"v": 1, "calls": [[name, gemini_id, signature], ...]}))``,
one entry per tool call of the turn, in order. Opaque to clients, like OpenAI's own (which is
encrypted; ours need not be: a signature is Gemini's opaque token, no secret, and a forged one
is refused by Gemini itself). Anything that does not decode (another provider's reasoning item,
a mangled string) is ignored: the ids still carry the signatures.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from gemini_proxy.adapters.gemini.ids import parse_tool_call_id

PREFIX = "gp1."
VERSION = 1


@dataclass(frozen=True, slots=True)
class CallSignature:
    name: str
    gemini_id: str | None
    signature: str | None


def from_tool_calls(tool_calls: list[dict[str, Any]]) -> list[CallSignature]:
    """What each chat tool call's id carries; empty when no call carries anything."""
    out = []
    for call in tool_calls:
        fn = call.get("function") or {}
        gid, sig = parse_tool_call_id(str(call.get("id") or ""))
        out.append(CallSignature(str(fn.get("name") or ""), gid, sig))
    return out if any(c.gemini_id or c.signature for c in out) else []


def encode(calls: list[CallSignature]) -> str:
    packed = orjson.dumps({"v": VERSION, "calls": [[c.name, c.gemini_id, c.signature] for c in calls]})
    return PREFIX + base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")


def decode(content: Any) -> list[CallSignature]:
    """The calls an ``encrypted_content`` we minted carries; [] for anything else."""
    if not isinstance(content, str) or not content.startswith(PREFIX):
        return []
    raw = content[len(PREFIX) :]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return []
    if not isinstance(data, dict) or data.get("v") != VERSION or not isinstance(data.get("calls"), list):
        return []
    out = []
    for entry in data["calls"]:
        if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str):
            gid, sig = entry[1], entry[2]
            out.append(
                CallSignature(entry[0], gid if isinstance(gid, str) else None, sig if isinstance(sig, str) else None)
            )
    return out
