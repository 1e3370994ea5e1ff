"""The built-in simulated upstreams, speaking the real wire formats on loopback.

``gemini-proxy demo`` starts the one each upstream kind names in the adapter REGISTRY
(gemini_proxy/adapters/__init__.py); the test fakes (tests/fakes/) build on them.
"""

from aiohttp import web

from gemini_proxy.adapters.simulated.batch import SimulatedBatch
from gemini_proxy.adapters.simulated.gemini import Issued, SimulatedGemini, error_body, split_stream, validate_generate
from gemini_proxy.adapters.simulated.openai import SimulatedOpenAI

__all__ = [
    "Issued",
    "SimulatedBatch",
    "SimulatedGemini",
    "SimulatedOpenAI",
    "error_body",
    "gemini_with_batches",
    "split_stream",
    "validate_generate",
]


def gemini_with_batches() -> web.Application:
    """The simulated Gemini with its Batch + Files API: what ``demo`` runs for kind "gemini"."""
    app = SimulatedGemini().app()
    SimulatedBatch().mount(app)
    return app
