"""OpenAI user content parts (text, images, audio, files) -> Gemini parts.

Media become ``inlineData`` (base64 as sent) or ``fileData`` (a URI Gemini reads itself). The
proxy never fetches a client-supplied URL: that would let any client make the proxy request
internal addresses (SSRF).
"""

from __future__ import annotations

from typing import Any

from gemini_proxy.adapters.base import RequestError

_AUDIO_MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "aiff": "audio/aiff",
    "pcm16": "audio/pcm",
}
_EXT_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "mp4": "video/mp4",
}


def _ext_mime(name: str, default: str) -> str:
    return _EXT_MIME.get(name.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower(), default)


def _data_uri(uri: str, param: str) -> dict[str, Any]:
    # data:[<mime>][;base64],<data>
    head, sep, data = uri.partition(",")
    if not sep or ";base64" not in head:
        raise RequestError(f"{param} must be a base64 data URI (data:<mime>;base64,...)", "messages")
    mime = head[5:].split(";", 1)[0] or "application/octet-stream"
    return {"inlineData": {"mimeType": mime, "data": data}}


def _file_part(file: Any, param: str) -> dict[str, Any]:
    if not isinstance(file, dict):
        raise RequestError(f"{param}.file must be an object", "messages")
    name: str = file["filename"] if isinstance(file.get("filename"), str) else ""
    data = file.get("file_data")
    if isinstance(data, str):
        if data.startswith("data:"):
            return _data_uri(data, f"{param}.file.file_data")
        return {"inlineData": {"mimeType": _ext_mime(name, "application/pdf"), "data": data}}
    file_id = file.get("file_id")
    # Only Gemini Files API references mean something upstream; OpenAI "file-..." ids do not.
    if isinstance(file_id, str) and file_id.startswith(("https://", "gs://", "files/")):
        return {"fileData": {"mimeType": _ext_mime(name or file_id, "application/pdf"), "fileUri": file_id}}
    raise RequestError(f"{param}.file needs file_data, or a Gemini Files API file_id (files/... or URI)", "messages")


def user_part(part: Any, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise RequestError(f"{param} must be an object", "messages")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise RequestError(f"{param}.text must be a string", "messages")
        return {"text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise RequestError(f"{param}.image_url.url must be a string", "messages")
        if url.startswith("data:"):
            return _data_uri(url, f"{param}.image_url.url")
        if url.startswith(("gs://", "https://")):
            # Never fetched by the proxy (SSRF): Gemini reads gs:// and Files API URIs itself.
            return {"fileData": {"mimeType": _ext_mime(url, "image/jpeg"), "fileUri": url}}
        raise RequestError(f"{param}.image_url.url must be a data URI, gs:// or https:// URL", "messages")
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
            raise RequestError(f"{param}.input_audio must be {{data, format}}", "messages")
        mime = _AUDIO_MIME.get(str(audio.get("format", "wav")).lower())
        if mime is None:
            raise RequestError(f"{param}.input_audio.format {audio.get('format')!r} is not supported", "messages")
        return {"inlineData": {"mimeType": mime, "data": audio["data"]}}
    if kind == "file":
        return _file_part(part.get("file"), param)
    raise RequestError(f"{param}.type {kind!r} is not supported", "messages")
