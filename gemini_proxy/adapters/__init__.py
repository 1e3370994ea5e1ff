"""Upstream adapters. :data:`REGISTRY` is the only registry: ``kind`` -> :class:`AdapterKind`.

Nothing else in the code compares upstream kinds as strings: config parsing asks a kind's
capabilities (which keys it needs), the key pool asks whether it brings its own credentials,
``serve`` builds each upstream's adapter with ``build``, and ``demo`` starts each kind's built-in
simulator. Adding a kind means adding a module and one entry here.

This package never imports anything outside it: the proxy hands it neutral types (base.py) and
gets back OpenAI-shaped answers, or an :class:`~gemini_proxy.adapters.base.UpstreamError`.
"""

from collections.abc import Mapping
from types import MappingProxyType

from gemini_proxy.adapters import vertex
from gemini_proxy.adapters.gemini import CAPABILITIES as GEMINI
from gemini_proxy.adapters.gemini import GeminiAdapter
from gemini_proxy.adapters.interface import AdapterKind, Simulator
from gemini_proxy.adapters.openai_compat import CAPABILITIES as OPENAI
from gemini_proxy.adapters.openai_compat import OpenAIAdapter
from gemini_proxy.adapters.simulated import SimulatedGemini, SimulatedOpenAI, gemini_with_batches

REGISTRY: Mapping[str, AdapterKind] = MappingProxyType(
    {
        "gemini": AdapterKind("gemini", GeminiAdapter, GEMINI, Simulator(gemini_with_batches)),
        "openai": AdapterKind("openai", OpenAIAdapter, OPENAI, Simulator(lambda: SimulatedOpenAI().app(), "/v1")),
        # Vertex speaks Gemini's wire format at its own paths, which the simulated Gemini serves too;
        # demo hands it a fixed token, as there are no Google credentials on a demo machine.
        "vertex": AdapterKind(
            "vertex",
            vertex.vertex_adapter,
            vertex.CAPABILITIES,
            Simulator(
                lambda: SimulatedGemini().app(),
                build=lambda up: vertex.vertex_adapter(up, token_source=vertex.StaticToken("demo-simulated-token")),
            ),
        ),
    }
)

__all__ = ["REGISTRY"]
