"""What to do after a failed attempt, and how long to wait first: one decision per failure.

The action comes from the failure's class and its tier (gemini_proxy/resilience/failures.py:
:func:`classify`, :data:`TIERS`); the wait honours the
server's own delay (Gemini's ``RetryInfo.retryDelay`` or a ``Retry-After`` header) up to a cap,
else grows exponentially with jitter (the shape openai-python uses). A retry that cannot start
before the request's deadline is not attempted: the next target gets the time instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from gemini_proxy.config.resilience import RetryPolicy
from gemini_proxy.resilience.failures import TIERS, Failure, FailureClass

# --- constants (the delays' defaults are [retry]'s: gemini_proxy/config/resilience.py) ---------
JITTER = 0.25  # exponential delays are scaled by a random factor in [1 - JITTER, 1]
MIN_ATTEMPT_S = 0.05  # an attempt needs at least this much of the deadline left to be worth starting

Action = Literal["retry", "next", "stop"]
UNLIMITED = 1 << 30  # "as many retries as the deadline allows"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    why: str = ""


def exponential(retry_no: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Delay before retry number ``retry_no`` (1-based) when the server named none."""
    raw = min(policy.max_delay_s, policy.base_delay_s * 2 ** (retry_no - 1))
    return raw * (1 - JITTER * rng.random())


def decide(
    err: Failure,
    cls: FailureClass,
    retries_done: int,
    policy: RetryPolicy,
    remaining_s: float,
    rng: random.Random,
    *,
    other_key: bool = False,
    patient: bool = False,
) -> Decision:
    """Retry the same target (after a delay), move to the next target, or stop.

    ``other_key``: the pool has another usable key, so a rejected key is rotated out at once.
    ``patient``: the lane waits out per-minute 429s for as long as the deadline allows (batch).
    """
    tier = TIERS[cls]
    if cls is FailureClass.AUTH and other_key:
        return Decision("retry", why="the upstream rejected the key: the same target on another key of the pool")
    if tier.action != "retry" or tier.retries is None:
        return Decision(tier.action, why=tier.why)
    allowed = UNLIMITED if patient and cls is FailureClass.RATE_LIMIT else int(getattr(policy, tier.retries))
    if retries_done >= allowed:
        return Decision("next", why=f"{cls.value}: {allowed} retries used")
    if err.retry_after_s is not None:
        if err.retry_after_s > policy.max_server_delay_s and not (patient and cls is FailureClass.RATE_LIMIT):
            return Decision(
                "next",
                why=f"server asks for {err.retry_after_s:g}s, over max_server_delay_s={policy.max_server_delay_s:g}",
            )
        delay, how = max(0.0, err.retry_after_s), f"honouring the server's delay of {err.retry_after_s:g}s"
    else:
        delay = exponential(retries_done + 1, policy, rng)
        how = f"exponential backoff {delay:.3f}s"
    if delay + MIN_ATTEMPT_S > remaining_s:
        return Decision("next", why=f"a retry after {delay:.3f}s would not start before the deadline")
    of = f"/{allowed}" if allowed != UNLIMITED else " (the lane waits out rate limits until its deadline)"
    return Decision("retry", delay, f"{cls.value}: retry {retries_done + 1}{of}, {how}")
