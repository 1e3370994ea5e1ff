"""The ``[responses]`` section: how long, and how much, the Responses API keeps per team.

    [responses]
    ttl_s = 21600                 # a stored response is forgotten this long after it was made
    max_per_team = 1000           # stored responses per team; the oldest go first
    max_mb_per_team = 64          # their stored size per team (memory backend), the oldest go first

``store: true`` (OpenAI's default) keeps each answer's input and output items so a later request
can continue it with ``previous_response_id``. OpenAI keeps them 30 days; a proxy keeps them in
memory (or in Redis when ``[state] backend = "redis"``), so both bounds are small by default and
a continuation past them is a clear 404, never a silently shorter history. Parsed once at start:
changes need a restart (the store outlives reloads, like the team meter).
"""

from __future__ import annotations

from dataclasses import dataclass

from gemini_proxy.config.table import Table


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    ttl_s: float = 6 * 3600.0
    max_per_team: int = 1000
    max_mb_per_team: float = 64.0

    @property
    def max_bytes_per_team(self) -> int:
        return int(self.max_mb_per_team * 1024 * 1024)


def parse(t: Table) -> ResponsesConfig:
    d = ResponsesConfig()
    cfg = ResponsesConfig(
        ttl_s=t.positive("ttl_s", float, d.ttl_s),
        max_per_team=t.positive("max_per_team", int, d.max_per_team),
        max_mb_per_team=t.positive("max_mb_per_team", float, d.max_mb_per_team),
    )
    t.done()
    return cfg
