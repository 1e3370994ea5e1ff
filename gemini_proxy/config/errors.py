"""The one config error: file + key + what is wrong + how to fix it.

Its own module because every parser of routing.toml raises it (the table helper, each section,
the overlay, the loader) and none of them should need another to do so.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A config problem, phrased so the reader can fix it without reading our code."""

    def __init__(self, file: str, key: str, problem: str, fix: str = "") -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        text = f"{file}: {key}: {problem}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)
