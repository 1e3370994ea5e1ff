"""Responses input items -> chat messages, the history the chat core understands.

Items are a flat list where chat has turns: consecutive ``function_call`` items (parallel calls)
join the assistant turn before them, each ``function_call_output`` becomes a ``tool`` message.
Items echoed from an earlier answer carry ``id`` and ``status``; they are accepted and ignored.
Reasoning items are not sent to the model (Gemini takes no thoughts back) but their
``encrypted_content`` puts thought signatures back on calls whose ids lost them
(:mod:`.signatures`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gemini_proxy.adapters.base import RequestError
from gemini_proxy.adapters.gemini.ids import make_tool_call_id, parse_tool_call_id
from gemini_proxy.responses import signatures
from gemini_proxy.responses.tools import CUSTOM_ARG

# Records of a tool OpenAI ran on its side (search, files, images, code, MCP listings): their
# result already shows in the assistant message after them, and no model here can continue them.
SKIPPED_ITEMS = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "image_generation_call",
        "code_interpreter_call",
        "mcp_list_tools",
        "mcp_call",
        "tool_search_call",
    }
)
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


def _text(part: dict[str, Any], where: str) -> str:
    if not isinstance(part.get("text"), str):
        raise RequestError(f"{where}.text must be a string", "input")
    return str(part["text"])


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    if isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if isinstance(part.get("file_id"), str):
        return {"type": "file", "file": {"file_id": part["file_id"]}}
    raise RequestError(f"{where} needs image_url or file_id", "input")


def _file(part: dict[str, Any], where: str) -> dict[str, Any]:
    file: dict[str, Any] = {}
    if isinstance(part.get("filename"), str):
        file["filename"] = part["filename"]
    if isinstance(part.get("file_data"), str):
        file["file_data"] = part["file_data"]
    elif isinstance(part.get("file_id"), str):
        file["file_id"] = part["file_id"]
    elif isinstance(part.get("file_url"), str):
        # The chat core passes a URL file reference to Gemini, which reads it (never the proxy).
        file["file_id"] = part["file_url"]
    else:
        raise RequestError(f"{where} needs file_data, file_id or file_url", "input")
    return {"type": "file", "file": file}


def user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    """Responses content parts -> chat user content parts."""
    if not isinstance(content, list):
        raise RequestError(f"{where}.content must be a string or a list of parts", "input")
    out = []
    for j, part in enumerate(content):
        pw = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            out.append({"type": "text", "text": _text(part, pw)})
        elif kind == "input_image":
            out.append(_image(part, pw))
        elif kind == "input_file":
            out.append(_file(part, pw))
        elif kind == "input_audio" and isinstance(part.get("input_audio"), dict):
            out.append({"type": "input_audio", "input_audio": part["input_audio"]})
        else:
            raise RequestError(f"{pw}.type {kind!r} is not supported", "input")
    return out


def _plain_text(content: Any, where: str, kinds: frozenset[str]) -> str:
    """System, developer and assistant content: a string or text parts (refusals read as text)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestError(f"{where}.content must be a string or a list of parts", "input")
    out = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "refusal" and isinstance(part, dict) and isinstance(part.get("refusal"), str):
            out.append(part["refusal"])
        elif kind in kinds and isinstance(part, dict):
            out.append(_text(part, f"{where}.content[{j}]"))
        else:
            raise RequestError(f"{where}.content[{j}].type {kind!r} is not supported for this role", "input")
    return "".join(out)


def _output_text(output: Any, where: str) -> tuple[str, list[dict[str, Any]]]:
    """A tool output: a string, or parts (text for the tool message, media for a user turn)."""
    if isinstance(output, str):
        return output, []
    if not isinstance(output, list):
        raise RequestError(f"{where}.output must be a string or a list of parts", "input")
    parts = user_parts(output, where)
    text = "".join(p["text"] for p in parts if p["type"] == "text")
    return text, [p for p in parts if p["type"] != "text"]


def _required_str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise RequestError(f"{where}.{key} must be a string", "input")
    return value


@dataclass
class _History:
    """The messages built so far, and what later items need from earlier ones."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    # Signatures from the last reasoning item, for the calls of its turn, in order.
    pending: list[signatures.CallSignature] = field(default_factory=list)
    # Client call_id -> the id sent to the core, when a reasoning item restored a signature.
    renamed: dict[str, str] = field(default_factory=dict)
    # Images/files returned by tool outputs: a user turn right after the tool messages.
    media: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def flush_media(self) -> None:
        if self.media:
            self.messages.append({"role": "user", "content": self.media})
            self.media = []

    def call_id(self, call_id: str, name: str) -> str:
        """The id to send for a call: the client's, unless its reasoning item knows more."""
        entry = next((e for e in self.pending if e.name == name), None)
        if entry is None:
            return call_id
        self.pending.remove(entry)  # consumed either way, so later same-name calls stay aligned
        if parse_tool_call_id(call_id) != (None, None) or not (entry.gemini_id or entry.signature):
            return call_id
        new_id = make_tool_call_id(entry.gemini_id, entry.signature, call_id)
        self.renamed[call_id] = new_id
        return new_id

    def add_call(self, call_id: str, name: str, arguments: str) -> None:
        call = {
            "id": self.call_id(call_id, name),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def add_output(self, item: dict[str, Any], where: str) -> None:
        call_id = _required_str(item, "call_id", where)
        text, media = _output_text(item.get("output"), where)
        self.messages.append({"role": "tool", "tool_call_id": self.renamed.get(call_id, call_id), "content": text})
        self.media.extend(media)


def _message(h: _History, item: dict[str, Any], where: str) -> None:
    role, content = item.get("role"), item.get("content")
    if role == "user":
        h.pending = []  # a user turn ends the model turn the signatures belonged to
        h.messages.append(
            {"role": "user", "content": content if isinstance(content, str) else user_parts(content, where)}
        )
    elif role in ("system", "developer"):
        h.messages.append({"role": role, "content": _plain_text(content, where, _TEXT_PARTS)})
    elif role == "assistant":
        h.messages.append({"role": "assistant", "content": _plain_text(content, where, _TEXT_PARTS)})
    else:
        raise RequestError(f"{where}.role must be user, assistant, system or developer", "input")


def _item(h: _History, item: dict[str, Any], kind: str, where: str) -> None:
    if kind == "message":
        _message(h, item, where)
    elif kind == "function_call":
        name, args = _required_str(item, "name", where), _required_str(item, "arguments", where)
        h.add_call(_required_str(item, "call_id", where), name, args)
    elif kind == "custom_tool_call":
        text = _required_str(item, "input", where)
        h.add_call(
            _required_str(item, "call_id", where),
            _required_str(item, "name", where),
            orjson.dumps({CUSTOM_ARG: text}).decode(),
        )
    elif kind == "reasoning":
        h.pending = signatures.decode(item.get("encrypted_content"))
    elif kind in SKIPPED_ITEMS:
        if kind not in h.skipped:
            h.skipped.append(kind)
    elif kind == "item_reference":
        raise RequestError(f"{where}: item_reference is not supported; send the item itself", "input")
    else:
        raise RequestError(f"{where}.type {kind!r} is not supported", "input")


def to_messages(items: list[Any], first_input: int = 0) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Items -> (chat messages, skipped item types). Items before ``first_input`` came from the
    store (``previous_response_id``) and are named that way in errors."""
    h = _History()
    for i, item in enumerate(items):
        where = f"input[{i - first_input}]" if i >= first_input else f"stored item {i} of previous_response_id"
        if not isinstance(item, dict):
            raise RequestError(f"{where} must be an object", "input")
        kind = item.get("type") or ("message" if "role" in item else None)
        if not isinstance(kind, str):
            raise RequestError(f"{where} needs a 'type' (or a 'role' for a message)", "input")
        if kind in ("function_call_output", "custom_tool_call_output"):
            h.add_output(item, where)
            continue
        h.flush_media()
        _item(h, item, kind, where)
    h.flush_media()
    return h.messages, tuple(h.skipped)
