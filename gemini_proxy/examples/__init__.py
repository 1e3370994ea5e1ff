"""The example config shipped inside the package, so `gemini-proxy demo` works after a plain
`pip install` from any directory. These files are copies of the repository's ``routing.toml``
and ``schemas/`` (a test keeps them identical); the example names its schema by a path relative
to its own folder, so the two travel together.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def example_config() -> Path:
    """The bundled example ``routing.toml`` (installed as a plain file, never zipped)."""
    return Path(str(files(__name__) / "routing.toml"))
