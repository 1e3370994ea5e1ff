"""Ids for requests and completions: a random per-process prefix plus a counter.

The proxy mints two ids per request (the request id and, for translated answers, the
``chatcmpl-`` id); ``secrets.token_hex`` for each cost ~5% of the proxy's CPU per request
(bench profiles). These ids label log lines and answers; they are not credentials. 48 random
bits per process keep two processes (or a restart) from colliding, the counter keeps ids unique
within a process, and a forked child draws a new prefix.
"""

from __future__ import annotations

import itertools
import os
import secrets


class _Ids:
    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = secrets.token_hex(6)
        self.counter = itertools.count(1)

    def next_hex(self) -> str:
        # 12 hex from the prefix + 12 from the counter: the 24 hex digits token_hex(12) gave.
        return f"{self.prefix}{next(self.counter):012x}"


_IDS = _Ids()
os.register_at_fork(after_in_child=_IDS.reseed)


def unique_hex() -> str:
    """24 hex digits, unique within this process and with high probability across processes."""
    return _IDS.next_hex()
