"""Client key -> team, and what a team may do with a resolved route.

Client keys are compared as SHA-256 digests with :func:`hmac.compare_digest` against every
configured hash (no early exit), so neither the key nor which team it belongs to leaks
through timing. :func:`authorize` is the one place a route is checked for a team: allowed
tasks / models (403), data residency (403, gemini_proxy/routing/residency.py), then RPM and budget (429).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from gemini_proxy.config import Config, TeamConfig
from gemini_proxy.errors import PermissionDenied
from gemini_proxy.routing import residency
from gemini_proxy.routing.meter import TeamMeter
from gemini_proxy.routing.resolve import Route


def hash_client_key(key: str) -> str:
    """The SHA-256 hex digest stored in ``[teams.NAME] key_sha256`` (``gemini-proxy hash-key``)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ClientKeys:
    """Every configured client key digest with its team; empty means auth is off."""

    entries: tuple[tuple[bytes, TeamConfig], ...] = ()

    @classmethod
    def build(cls, teams: Mapping[str, TeamConfig]) -> ClientKeys:
        return cls(tuple((bytes.fromhex(h), team) for team in teams.values() for h in team.key_sha256))

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def lookup(self, presented: str) -> TeamConfig | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for known, team in self.entries:  # all of them, always: constant work per request
            if hmac.compare_digest(known, digest):
                found = team
        return found


def _check_allowed(team: TeamConfig, route: Route) -> None:
    if route.kind == "task":
        if team.allowed_tasks is not None and route.name not in team.allowed_tasks:
            raise PermissionDenied(
                f"team {team.name!r} may not use task {route.name!r}; allowed tasks: "
                f"{', '.join(sorted(team.allowed_tasks)) or 'none'}",
                code="task_not_allowed",
                param="x-task",
            )
    elif team.allowed_models is not None and route.name not in team.allowed_models:
        raise PermissionDenied(
            f"team {team.name!r} may not use model {route.name!r}; allowed models: "
            f"{', '.join(sorted(team.allowed_models)) or 'none'}",
            code="model_not_allowed",
            param="model",
        )


async def authorize(config: Config, team: TeamConfig | None, route: Route, meter: TeamMeter) -> Route:
    """The route this request may use: checked for the team, cut to the allowed regions, metered."""
    route = permitted(config, team, route)
    admission = None
    if team is not None:
        # With Redis the team's quota rides with the first upstream admission: one round trip
        # for both (the target, and so its limits, is known only in the attempt loop).
        admission = meter.deferred(team)
        if admission is None:
            await meter.admit(team)
    return route if admission is None else dataclasses.replace(route, team_admission=admission)


def permitted(config: Config, team: TeamConfig | None, route: Route) -> Route:
    """The route checked for the team and cut to the allowed regions, without metering: what a
    batch line gets at validation (the batch is metered once, not per line)."""
    if team is not None:
        _check_allowed(team, route)
    task = config.tasks.get(route.task) if route.task else None
    targets = residency.restrict(
        route.name,
        route.targets,
        config.upstreams,
        team.allowed_regions if team else None,
        task.allowed_regions if task else None,
    )
    return route if targets == route.targets else dataclasses.replace(route, targets=targets)
