"""The built-in simulated upstreams, speaking the real wire formats on loopback.

``gemini-proxy demo`` starts the one each upstream kind names in the adapter REGISTRY
(gemini_proxy/adapters/__init__.py); the test fakes (tests/fakes/) build on them.
"""

from gemini_proxy.adapters.simulated.gemini import Issued, SimulatedGemini, error_body, split_stream, validate_generate
from gemini_proxy.adapters.simulated.openai import SimulatedOpenAI

__all__ = ["Issued", "SimulatedGemini", "SimulatedOpenAI", "error_body", "split_stream", "validate_generate"]
