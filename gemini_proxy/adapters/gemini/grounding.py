"""What Gemini's built-in tools put in an answer -> what an OpenAI client can read.

Why a module of its own: Google Search grounding, URL context and code execution answer with
data chat completions has no field for, and peers drop it (``content: null`` for code-only
answers, citations left out). Here:

- ``executableCode`` / ``codeExecutionResult`` parts are rendered, in order, into the message
  text as fenced blocks (``python`` / ``output``), so every client shows them, and kept
  structured in the extension ``extra_content.google.code_execution``.
- ``groundingMetadata.groundingSupports`` become OpenAI ``url_citation`` annotations. Gemini
  counts **UTF-8 bytes** (per part, ``segment.partIndex``); OpenAI counts **characters** of
  ``message.content``. :class:`Content` records where each piece of answer text landed in the
  content (code blocks shift it), so a byte offset maps to the character the client slices at.
  When the segment carries its ``text`` and the mapped span does not hold it (a stream whose
  offsets count differently), the text is looked up instead: a citation is never off by a few.
- Search queries, the rendered search entry point, sources and URL-context retrieval status go
  to the extension ``extra_content.google`` (the place Google's own OpenAI-compatible endpoint
  uses for Gemini-only data), never lost.
"""

from __future__ import annotations

import bisect
from typing import Any

_LANG = {"PYTHON": "python", "LANGUAGE_UNSPECIFIED": ""}


class Content:
    """One candidate's answer text as the client sees it, built part by part (whole or streamed).

    The hot path (every answer) only appends; UTF-8 byte positions, which only citations need,
    are computed when asked (:meth:`char_at`, :meth:`part_byte`).
    """

    __slots__ = ("_parts", "_spans", "chars", "code", "pieces")

    def __init__(self) -> None:
        self.pieces: list[str] = []  # everything in message.content, in order
        self.chars = 0  # len("".join(pieces))
        self._spans: list[tuple[int, str]] = []  # the model's own text: (content char start, text)
        self._parts: list[int] = []  # per upstream part: how many text spans came before it
        self.code: list[dict[str, Any]] = []  # the structured extension, in order

    def text(self) -> str:
        return "".join(self.pieces)

    def add(self, part: dict[str, Any]) -> str:
        """Account for one non-thought, non-call part; return what it adds to the content."""
        self._parts.append(len(self._spans))
        text = part.get("text")
        if isinstance(text, str):
            self._spans.append((self.chars, text))
            return self._emit(text)
        code, result = part.get("executableCode"), part.get("codeExecutionResult")
        if isinstance(code, dict):
            lang = str(code.get("language") or "PYTHON")
            self.code.append({"type": "executable_code", "language": lang, "code": str(code.get("code") or "")})
            return self._emit(_fence(_LANG.get(lang, lang.lower()), str(code.get("code") or "")))
        if isinstance(result, dict):
            outcome = str(result.get("outcome") or "OUTCOME_UNSPECIFIED")
            output = str(result.get("output") or "")
            self.code.append({"type": "code_execution_result", "outcome": outcome, "output": output})
            return self._emit(_fence("output", output))
        return ""

    def skip(self) -> None:
        """A part that adds nothing to the content (a thought, a call) still has a partIndex."""
        self._parts.append(len(self._spans))

    def _emit(self, text: str) -> str:
        self.pieces.append(text)
        self.chars += len(text)
        return text

    def _byte_starts(self) -> list[int]:
        """Where each text span starts, in UTF-8 bytes of the model's text (what Gemini counts)."""
        starts, total = [], 0
        for _, text in self._spans:
            starts.append(total)
            total += len(text.encode())
        starts.append(total)  # the end, where a part after the last span starts
        return starts

    def part_byte(self, index: int) -> int:
        """The byte offset at which upstream part ``index`` began (0 when unknown)."""
        if not 0 <= index < len(self._parts):
            return 0
        return self._byte_starts()[self._parts[index]]

    def char_at(self, byte: int, *, end: bool = False) -> int:
        """The content character index of a UTF-8 byte offset into the model's text."""
        if not self._spans:
            return 0
        starts = self._byte_starts()[:-1]
        pos = (bisect.bisect_left if end else bisect.bisect_right)(starts, byte) - 1
        pos = max(pos, 0)
        char0, text = self._spans[pos]
        encoded = text.encode()
        offset = min(max(byte - starts[pos], 0), len(encoded))
        return char0 + len(encoded[:offset].decode("utf-8", "ignore"))


def _fence(lang: str, body: str) -> str:
    return f"\n```{lang}\n{body.rstrip(chr(10))}\n```\n"


def citations(content: Content, meta: Any, *, per_part: bool) -> list[dict[str, Any]]:
    """groundingMetadata -> OpenAI ``url_citation`` annotations over ``content``'s text.

    ``per_part``: offsets count from the start of ``segment.partIndex`` (a whole answer); a
    stream's offsets count over the text streamed so far.
    """
    if not isinstance(meta, dict):
        return []
    chunks = meta.get("groundingChunks") or []
    full = content.text()
    out: list[dict[str, Any]] = []
    for support in meta.get("groundingSupports") or []:
        seg = support.get("segment") if isinstance(support, dict) else None
        if not isinstance(seg, dict):
            continue
        span = _span(content, full, seg, per_part)
        if span is None:
            continue
        for index in support.get("groundingChunkIndices") or []:
            source = _source(chunks[index]) if isinstance(index, int) and 0 <= index < len(chunks) else None
            if source is not None:
                citation = {
                    "url": source["url"],
                    "title": source["title"],
                    "start_index": span[0],
                    "end_index": span[1],
                }
                out.append({"type": "url_citation", "url_citation": citation})
    return out


def _span(content: Content, full: str, seg: dict[str, Any], per_part: bool) -> tuple[int, int] | None:
    part = seg.get("partIndex", 0)
    base = content.part_byte(part) if per_part and isinstance(part, int) else 0
    # proto3 JSON omits zeros: a segment at the very start has no startIndex.
    start_b, end_b = seg.get("startIndex", 0), seg.get("endIndex")
    if not isinstance(start_b, int) or not isinstance(end_b, int) or end_b < start_b:
        return None
    start, end = content.char_at(base + start_b), content.char_at(base + end_b, end=True)
    text = seg.get("text")
    if isinstance(text, str) and text and full[start:end] != text:
        found = full.find(text)
        if found < 0:
            return (start, end) if end > start else None
        start, end = found, found + len(text)
    return start, end


def _source(chunk: Any) -> dict[str, str] | None:
    ref = (chunk.get("web") or chunk.get("retrievedContext")) if isinstance(chunk, dict) else None
    if not isinstance(ref, dict) or not isinstance(ref.get("uri"), str):
        return None
    return {"url": ref["uri"], "title": str(ref.get("title") or "")}


def extension(cand: dict[str, Any]) -> dict[str, Any]:
    """The Gemini-only data of a candidate for ``extra_content.google`` (empty when none)."""
    out: dict[str, Any] = {}
    meta = cand.get("groundingMetadata")
    if isinstance(meta, dict):
        grounding: dict[str, Any] = {
            "web_search_queries": [q for q in meta.get("webSearchQueries") or [] if isinstance(q, str)],
            "sources": [s for s in map(_source, meta.get("groundingChunks") or []) if s is not None],
        }
        entry = meta.get("searchEntryPoint")
        if isinstance(entry, dict) and isinstance(entry.get("renderedContent"), str):
            grounding["search_entry_point"] = entry["renderedContent"]
        out["grounding"] = grounding
    urls = cand.get("urlContextMetadata")
    if isinstance(urls, dict):
        out["url_context"] = [
            {"url": str(u.get("retrievedUrl", "")), "status": str(u.get("urlRetrievalStatus", ""))}
            for u in urls.get("urlMetadata") or []
            if isinstance(u, dict)
        ]
    return out


def used_in(cand: dict[str, Any], content: Content) -> list[str]:
    """The built-in tools a translated candidate used: key checks only (every answer pays this)."""
    used = []
    if "groundingMetadata" in cand and used_tools({"groundingMetadata": cand["groundingMetadata"]}):
        used.append("google_search")
    if "urlContextMetadata" in cand:
        used.append("url_context")
    if content.code:
        used.append("code_execution")
    return used


def used_tools(cand: Any) -> set[str]:
    """The built-in tools a candidate shows were used (for the log and the grounding fee)."""
    used: set[str] = set()
    if not isinstance(cand, dict):
        return used
    meta = cand.get("groundingMetadata")
    if isinstance(meta, dict) and (meta.get("webSearchQueries") or meta.get("groundingChunks")):
        used.add("google_search")
    if isinstance(cand.get("urlContextMetadata"), dict):
        used.add("url_context")
    for part in (cand.get("content") or {}).get("parts") or ():
        if isinstance(part, dict) and ("executableCode" in part or "codeExecutionResult" in part):
            used.add("code_execution")
    return used


def note_used(usage: Any, candidates: Any) -> None:
    """Add the tools ``candidates`` used to ``usage.builtin_tools`` (kept sorted, each once)."""
    used = set(usage.builtin_tools)
    for cand in candidates if isinstance(candidates, list) else ():
        used |= used_tools(cand)
    usage.builtin_tools = tuple(sorted(used))
