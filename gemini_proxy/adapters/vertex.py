"""Vertex AI as an upstream kind: the Gemini wire format at a regional Google Cloud endpoint.

Why a separate kind: on Vertex the region is part of the host and the path, which is how a team
pins where its data is processed (``location = "europe-west4"`` keeps prompts in the EU), and
auth is an OAuth bearer token from Google's application-default credentials (a service account
on GKE/Cloud Run, ``gcloud auth application-default login`` on a laptop), not an API key.

Translation is exactly Gemini's, so a Vertex upstream is the Gemini adapter composed with another
URL and another credential (:class:`BearerAuth`), no code path of its own:

    https://{location}-aiplatform.googleapis.com/v1beta1/projects/{project}/locations/{location}
        /publishers/google/models/{model}:generateContent

Tokens come from a :class:`TokenSource`; the default one wraps google-auth and refreshes off
the event loop (google-auth's refresh is blocking HTTP). Tests pass a stub.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Protocol

import aiohttp

from gemini_proxy.adapters.base import Call, Upstream, UpstreamError
from gemini_proxy.adapters.gemini.adapter import CAPABILITIES as GEMINI
from gemini_proxy.adapters.gemini.adapter import GeminiAdapter
from gemini_proxy.adapters.interface import Capabilities, Operation

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
        import google.auth  # optional heavy dependency, only for Vertex upstreams: loaded on first use
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


# Vertex serves gemini-embedding-001 through `:predict` with its own instance format, not
# batchEmbedContents: not mapped yet, so the attempt loop moves on to a fallback that serves it.
CAPABILITIES = Capabilities(
    operations=GEMINI.operations - {Operation.EMBED},
    # Credentials come from google-auth, not from api_key_env / api_key_file: key handling must
    # not count this upstream as keyless when it has no key source configured.
    own_credentials=True,
    base_url_optional=True,  # derived from location
    required_keys=("project", "location"),
    provider="gcp.vertex_ai",
)


class BearerAuth:
    """An OAuth access token per call, from a :class:`TokenSource`, as ``Authorization: Bearer``.

    The token rides where an API key would (``call.api_key``), so every redaction covers it.
    """

    def __init__(self, tokens: TokenSource, upstream: str) -> None:
        self.tokens, self.upstream = tokens, upstream

    async def authorize(self, call: Call) -> Call:
        try:
            token = await self.tokens.token()
        except UpstreamError as err:
            err.upstream = self.upstream
            raise
        return dataclasses.replace(call, api_key=token)

    def headers(self, call: Call) -> dict[str, str]:
        return {"Authorization": f"Bearer {call.api_key}"} if call.api_key else {}


def models_url(upstream: Upstream) -> str:
    return (
        f"{endpoint_root(upstream)}/{VERSION}/projects/{upstream.project}/locations/{upstream.location}"
        "/publishers/google/models/"
    )


def vertex_adapter(
    upstream: Upstream, session: aiohttp.ClientSession | None = None, token_source: TokenSource | None = None
) -> GeminiAdapter:
    """A Vertex AI upstream: the Gemini adapter with Vertex's URL and a bearer token."""
    auth = BearerAuth(token_source or ADCTokenSource(), upstream.name)
    return GeminiAdapter(upstream, session, auth=auth, models_url=models_url(upstream), capabilities=CAPABILITIES)


class StaticToken:
    """A fixed token: ``demo`` against the simulated Gemini, which checks only that one is sent."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token
