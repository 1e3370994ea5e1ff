"""What the request side learns that the answer side needs: one small frozen record per request.

The chat core answers in chat terms (a function named ``apply_patch`` with one string argument,
``reasoning_content``); turning that back into Responses terms (a ``custom_tool_call``, a
reasoning summary item) needs to know what the client asked for. :func:`to_chat` records it
here and :func:`from_chat` / :class:`StreamConverter` read it, so neither re-parses the request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field


def new_response_id() -> str:
    # Stored responses are fetched by id: an unguessable id is a second wall behind the per-team
    # check (one token per request is cheap next to the upstream call it labels).
    return "resp_" + secrets.token_hex(24)


def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """An output item's id, derived from its response and position.

    Deterministic so the streamed and the whole answer of the same response name their items
    alike, and so a stored response's items keep their ids when read back.
    """
    digest = hashlib.blake2b(f"{response_id}:{output_index}".encode(), digest_size=16).hexdigest()
    return f"{prefix}_{digest}"


@dataclass(frozen=True, slots=True)
class Context:
    """One Responses request as the answer side needs it."""

    model: str
    response_id: str = field(default_factory=new_response_id)
    created_at: int = field(default_factory=lambda: int(time.time()))
    stream: bool = False
    store: bool = True
    # Names of freeform `custom` tools sent to the core as one-string-argument functions: their
    # calls go back to the client as `custom_tool_call` items.
    custom_tools: frozenset[str] = frozenset()
    # Tool types the route cannot serve, dropped from the request (the handler names them in a
    # response header), in the order first seen.
    dropped_tools: tuple[str, ...] = ()
    # Input item types that record a server-side tool run (web_search_call...) and were skipped.
    skipped_items: tuple[str, ...] = ()
    # reasoning.summary was set: thought summaries come back as a reasoning item.
    summary: bool = False
    # include has "reasoning.encrypted_content": thought signatures come back in a reasoning item.
    encrypted: bool = False
