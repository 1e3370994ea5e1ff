"""The ``[teams.NAME]`` section and ``allowed_regions`` lists of routing.toml (into ``model.TeamConfig``).

A team is who a client key belongs to. Its keys are stored only as SHA-256 hex digests
(``gemini-proxy hash-key`` prints one), so the config file, a leaked backup or ``check`` output
never holds a usable client key. Restrictions are allow-lists; an absent list means "no limit".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gemini_proxy.config.model import ModelAlias, Target, TaskConfig, TeamConfig, UpstreamConfig
from gemini_proxy.config.table import Table, str_list

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LITERAL_KEY_FIELDS = ("key", "keys", "api_key", "api_keys", "client_key", "client_keys")


def parse_regions(
    t: Table, upstreams: Mapping[str, UpstreamConfig], targets: tuple[Target, ...] | None = None
) -> tuple[str, ...] | None:
    """``allowed_regions``; for a task, at least one of its targets must be inside them."""
    if "allowed_regions" not in t.data:
        return None
    regions = str_list(t, "allowed_regions")
    if not regions:
        raise t.error("allowed_regions", "is empty, so nothing could ever be served", "list regions or remove it")
    if targets is not None and not any(upstreams[x.upstream].region in regions for x in targets):
        raise t.error(
            "allowed_regions",
            f"none of this task's targets ({', '.join(map(str, targets))}) is in {list(regions)}",
            "tag an upstream with region = ... or route the task to one that is",
        )
    return regions


def _parse_team(
    name: str,
    t: Table,
    upstreams: Mapping[str, UpstreamConfig],
    models: Mapping[str, ModelAlias],
    tasks: Mapping[str, TaskConfig],
) -> TeamConfig:
    for field in _LITERAL_KEY_FIELDS:
        if field in t.data:
            raise t.error(
                field,
                "client keys are never stored in the config",
                'store their hashes: key_sha256 = ["..."], from `printf %s KEY | gemini-proxy hash-key`',
            )
    hashes = tuple(h.lower() for h in str_list(t, "key_sha256"))
    if not hashes:
        raise t.error("key_sha256", "is required: the SHA-256 hex of each client key", "run gemini-proxy hash-key")
    for i, h in enumerate(hashes):
        if not _SHA256.match(h):
            raise t.error(
                f"key_sha256[{i}]", "is not a SHA-256 hex digest (64 hex digits)", "run gemini-proxy hash-key"
            )
    allowed_tasks = _names(t, "allowed_tasks", tasks, "[tasks]")
    allowed_models = _names(t, "allowed_models", models, "[models]", upstreams)
    rpm = t.positive("rpm", int, None)
    budget = t.positive("daily_budget_usd", float, None)
    team = TeamConfig(
        name=name,
        key_sha256=hashes,
        allowed_tasks=allowed_tasks,
        allowed_models=allowed_models,
        rpm=rpm,
        daily_budget_usd=budget,
        allowed_regions=parse_regions(t, upstreams),
    )
    t.done()
    return team


def _names(
    t: Table, key: str, known: Mapping[str, Any], where: str, upstreams: Mapping[str, UpstreamConfig] | None = None
) -> frozenset[str] | None:
    if key not in t.data:
        return None
    names = str_list(t, key)
    for i, n in enumerate(names):
        literal = upstreams is not None and n.partition(":")[0] in upstreams and ":" in n
        if n not in known and not literal:
            raise t.error(f"{key}[{i}]", f"{n!r} is not defined in {where}", f"use one of: {', '.join(sorted(known))}")
    return frozenset(names)


def parse_teams(
    table: Table,
    upstreams: Mapping[str, UpstreamConfig],
    models: Mapping[str, ModelAlias],
    tasks: Mapping[str, TaskConfig],
) -> Mapping[str, TeamConfig]:
    teams: dict[str, TeamConfig] = {}
    owner: dict[str, str] = {}
    for name in list(table.data):
        sub = table.table(name)
        team = _parse_team(name, sub, upstreams, models, tasks)
        for h in team.key_sha256:
            if h in owner:
                raise sub.error("key_sha256", f"a key hash is also listed by team {owner[h]!r}", "one key, one team")
            owner[h] = name
        teams[name] = team
    return MappingProxyType(teams)
