"""``gemini-proxy check``: validate a config and print what it resolves to, keys only as short hashes."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from gemini_proxy.adapters.redact import redact
from gemini_proxy.cli.workers import per_process_state
from gemini_proxy.config import Config, ConfigError, load, with_workers
from gemini_proxy.examples import example_config
from gemini_proxy.resilience.keys.pool import KeyPool
from gemini_proxy.resilience.keys.sources import read_keys
from gemini_proxy.runtime import blocking_key_problems

DEFAULT_CONFIG = "routing.toml"


def find_config(path: str) -> Path:
    """The given path; without --config and no ./routing.toml, the example shipped in the package."""
    candidate = Path(path)
    if candidate.exists() or path != DEFAULT_CONFIG:
        return candidate
    return example_config()


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = with_workers(load(find_config(args.config), args.env), args.workers)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{config.path}: OK (env: {config.env or 'none: base config'})")
    print("\nupstreams (keys shown only as short hashes):")
    for name, up in config.upstreams.items():
        region = f" region={up.region}" if up.region else ""
        optional = " (optional)" if up.optional else ""
        print(f"  {name:<12} kind={up.kind:<7} {up.spec.base_url}{region}{optional}")
        for key in read_keys(up) or []:
            print(f"      key {key.source}: {key.id if key.value else f'MISSING ({key.problem})'}")
        if not up.key_envs and not up.key_files:
            print("      key: none configured")
    print("\nmodels (client 'model' values):")
    for name, alias in config.models.items():
        note = f"  # {alias.description}" if alias.description else ""
        print(f"  {name:<20} -> {' -> '.join(str(t) for t in alias.targets)}{note}")
    print("\ntasks (x-task header):")
    for name, task in config.tasks.items():
        regions = f"  regions={list(task.allowed_regions)}" if task.allowed_regions else ""
        note = f"  # {task.description}" if task.description else ""
        print(f"  {name:<20} -> {' -> '.join(str(t) for t in task.targets)}  (via {task.model}){regions}{note}")
    _print_state(config)
    if not _tracing(config):
        return 1
    print("\nteams:" if config.teams else "\nteams: none, so auth is OFF (every client is let in)")
    for name, team in config.teams.items():
        limits = [f"keys={len(team.key_sha256)}"]
        for label, value in (
            ("tasks", team.allowed_tasks),
            ("models", team.allowed_models),
            ("regions", team.allowed_regions),
        ):
            if value is not None:
                limits.append(f"{label}={sorted(value)}")
        if team.rpm:
            limits.append(f"rpm={team.rpm}")
        if team.daily_budget_usd:
            limits.append(f"budget=${team.daily_budget_usd:g}/day")
        print(f"  {name:<20} {' '.join(limits)}")
    return _missing_keys(config, args.no_secrets)


def _tracing(config: Config) -> bool:
    """Print where traces go; False when tracing is on but its packages are missing (serve would stop)."""
    endpoint = config.tracing.endpoint(os.environ)
    if endpoint is None:
        print("\ntracing: off (no [tracing] otlp_endpoint, no OTEL_EXPORTER_OTLP_ENDPOINT)")
        return True
    service, ratio = config.tracing.service(os.environ), config.tracing.sample_ratio
    print(f"\ntracing: OTLP/HTTP to {redact(endpoint)} as service {service!r}, sample_ratio={ratio:g}")
    if importlib.util.find_spec("opentelemetry.sdk") is None:  # looked up, not imported
        print(
            "error: tracing is on but OpenTelemetry is not installed: pip install 'gemini-proxy[otel]'", file=sys.stderr
        )
        return False
    return True


def _print_state(config: Config) -> None:
    state, workers = config.state, config.server.workers
    if state.backend == "memory":
        if workers == 1:
            print("\nstate: memory (limits, budgets and key health are this process's own)")
        else:
            print(
                f"\nstate: memory, workers={workers}: each worker enforces 1/{workers} of every limit and budget"
                " (upstream rpm/tpm/rpd, team rpm and daily_budget_usd); key health and circuits are each"
                ' worker\'s own. [state] backend = "redis" shares them whole.'
            )
            print(f"warning: {per_process_state(config)}")
        return
    where = f"env:{state.url_env}" if state.url_env else redact(state.url)  # the URL may hold a password
    split = f"replicas={state.replicas}" if workers == 1 else f"replicas={state.replicas} x workers={workers}"
    print(
        f"\nstate: {state.backend} at {where}, prefix {state.key_prefix!r}, on error: {state.on_state_error}"
        f" (limits and budgets shared by every worker and replica; the local fallback divides them by {split})"
    )


def _missing_keys(config: Config, no_secrets: bool) -> int:
    """Exit status of `check`: 1 when a key that /readyz needs is missing, unless --no-secrets."""
    blocking = blocking_key_problems(config, {name: KeyPool.build(up).problem for name, up in config.upstreams.items()})
    if not blocking:
        return 0
    for name, why in blocking.items():
        where = "note" if no_secrets else "error"
        print(f"{where}: upstream {name} has no key: {why}", file=sys.stderr)
    if no_secrets:
        print("(--no-secrets: the config is valid; serve would not be ready until those keys exist)", file=sys.stderr)
        return 0
    print(
        "fix: set the variable or write the file named above; mark a fallback upstream `optional = true` "
        "if it may run without a key; or validate the config alone with `check --no-secrets`",
        file=sys.stderr,
    )
    return 1
