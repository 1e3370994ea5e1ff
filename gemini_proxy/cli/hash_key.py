"""``gemini-proxy hash-key``: the SHA-256 of a client key read from stdin, for ``[teams.NAME] key_sha256``."""

from __future__ import annotations

import argparse
import sys

from gemini_proxy.routing.teams import hash_client_key


def cmd_hash_key(args: argparse.Namespace) -> int:
    """Read a client key on stdin (never argv: it would land in shell history and `ps`)."""
    key = sys.stdin.read().strip()
    if not key:
        print('error: no key on stdin (try: printf %s "$KEY" | gemini-proxy hash-key)', file=sys.stderr)
        return 1
    print(hash_client_key(key))
    return 0
