"""The README's more-endpoints snippets run as written against a proxy (sync clients, threaded servers)."""

from __future__ import annotations

import contextlib
import io

from gemini_proxy.http.app import make_app
from tests.conftest import ENV, ThreadedServers, config_toml, make_config
from tests.fakes.gemini import FakeGemini
from tests.fakes.openai import FakeOpenAI
from tests.frameworks import README_BASE_URL, readme_snippets

EXTRA = """
[models.embed]
target = "google:gemini-embedding-001"
"""


def _run(snippets: list[str], base: str, root_url: str) -> str:
    out = io.StringIO()
    for code in snippets:
        assert base in code
        with contextlib.redirect_stdout(out):
            exec(compile(code.replace(base, root_url), "README.md", "exec"), {})
    return out.getvalue()


def _stack(threaded: ThreadedServers) -> tuple[FakeGemini, str]:
    gemini, gateway = FakeGemini(), FakeOpenAI()
    gemini.url = threaded.start(gemini.app())
    gateway.url = threaded.start(gateway.app()) + "/v1"
    url = threaded.start(make_app(make_config(config_toml(gemini.url, gateway.url, EXTRA)), environ=ENV))
    return gemini, url


def test_readme_embeddings_snippet_runs(threaded: ThreadedServers) -> None:
    gemini, url = _stack(threaded)
    out = _run(readme_snippets("more-endpoints", "`POST /v1/embeddings`"), README_BASE_URL, url + "/v1")
    assert out.split() == ["2", "768"]
    assert gemini.requests[0]["method"] == "batchEmbedContents"


def test_readme_google_genai_snippet_runs(threaded: ThreadedServers) -> None:
    gemini, url = _stack(threaded)
    snippets = readme_snippets("more-endpoints", "Native Gemini API for google-genai users")
    out = _run(snippets, README_BASE_URL.removesuffix("/v1"), url)
    assert "You said: Hello" in out
    assert (gemini.requests[0]["model"], gemini.requests[0]["method"]) == ("gemini-2.5-flash", "generateContent")
