"""Request and completion ids: unique per process without a CSPRNG call per request."""

from __future__ import annotations

import re

from gemini_proxy.adapters.unique import _Ids, unique_hex


def test_ids_are_24_hex_digits_and_never_repeat() -> None:
    ids = [unique_hex() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_reseeded_process_draws_a_new_prefix() -> None:
    ids = _Ids()
    before = ids.next_hex()
    ids.reseed()  # what a forked child does (os.register_at_fork)
    after = ids.next_hex()
    assert before[:12] != after[:12]
    assert before[12:] == after[12:]  # the counter restarted; the prefix keeps the two apart
