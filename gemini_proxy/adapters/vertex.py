"""Vertex AI as an upstream kind: the Gemini wire format at a regional Google Cloud endpoint.

Why a separate kind: on Vertex the region is part of the host and the path, which is how a team
pins where its data is processed (``location = "europe-west4"`` keeps prompts in the EU), and
auth is an OAuth bearer token from Google's application-default credentials (a service account
on GKE/Cloud Run, ``gcloud auth application-default login`` on a laptop), not an API key.

Translation is exactly Gemini's, so this adapter only changes the URL and the credentials:

    https://{location}-aiplatform.googleapis.com/v1beta1/projects/{project}/locations/{location}
        /publishers/google/models/{model}:generateContent

Tokens come from a :class:`TokenSource`; the default one wraps google-auth and refreshes off
the event loop (google-auth's refresh is blocking HTTP). Tests pass a stub.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp

from gemini_proxy.adapters.base import Call, Completion, StreamState, Upstream, UpstreamError
from gemini_proxy.adapters.gemini.transport import GeminiAdapter

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
VERSION = "v1beta1"


class TokenSource(Protocol):
    async def token(self) -> str: ...


class ADCTokenSource:
    """Application-default credentials via google-auth, cached until google-auth calls them stale."""

    def __init__(self) -> None:
        self._creds: Any = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:  # one refresh at a time, however many requests wait for it
            if self._creds is None or not self._creds.valid:  # `valid` already subtracts a clock skew
                await asyncio.to_thread(self._refresh)
            return str(self._creds.token)

    def _refresh(self) -> None:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests

        try:
            if self._creds is None:
                self._creds, _ = google.auth.default(scopes=list(SCOPES))
            self._creds.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.GoogleAuthError as exc:
            # An auth failure, so classify() moves on to the next target instead of retrying here.
            raise UpstreamError(
                401, f"Google application-default credentials failed: {exc}", code="vertex_auth"
            ) from None


def endpoint_root(upstream: Upstream) -> str:
    if upstream.base_url:
        return upstream.base_url.rstrip("/")
    if upstream.location == "global":  # the global endpoint has no region prefix
        return "https://aiplatform.googleapis.com"
    return f"https://{upstream.location}-aiplatform.googleapis.com"


class VertexAdapter(GeminiAdapter):
    # Config checks these are set (see proxy/config.py), and `base_url` may be left out.
    required_keys = ("project", "location")
    base_url_optional = True
    # Credentials come from google-auth, not from api_key_env / api_key_file: key handling must
    # not count this upstream as keyless when it has no key source configured.
    own_credentials = True

    def __init__(
        self,
        upstream: Upstream,
        session: aiohttp.ClientSession | None = None,
        token_source: TokenSource | None = None,
    ) -> None:
        super().__init__(upstream, session)
        self._base = (
            f"{endpoint_root(upstream)}/{VERSION}/projects/{upstream.project}/locations/{upstream.location}"
            "/publishers/google/models/"
        )
        self.tokens: TokenSource = token_source or ADCTokenSource()

    def _request_headers(self, call: Call) -> dict[str, str]:
        headers = dict(self._headers)
        if call.api_key:
            headers["Authorization"] = f"Bearer {call.api_key}"
        return headers

    async def _authorize(self, call: Call) -> Call:
        # The token rides where an API key would, so every redaction of call.api_key covers it.
        try:
            token = await self.tokens.token()
        except UpstreamError as err:
            err.upstream = self.upstream.name
            raise
        return dataclasses.replace(call, api_key=token)

    async def complete(self, call: Call) -> Completion:
        return await super().complete(await self._authorize(call))

    async def stream(self, call: Call, state: StreamState) -> AsyncIterator[bytes]:
        call = await self._authorize(call)
        async for chunk in super().stream(call, state):
            yield chunk

    async def embed(self, call: Call) -> Completion:
        # Vertex serves gemini-embedding-001 through `:predict` with its own instance format,
        # not batchEmbedContents: not mapped yet, so the attempt loop moves on to a fallback.
        raise UpstreamError(
            501,
            f"upstream {self.upstream.name} (Vertex AI) does not serve /v1/embeddings through the proxy yet",
            upstream=self.upstream.name,
            code="embeddings_unsupported",
        )
