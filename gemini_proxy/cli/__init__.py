"""Command line: serve | demo | check | hash-key | report.

gemini-proxy serve --config routing.toml [--env prod] [--host H] [--port P]   # SIGHUP reloads
gemini-proxy demo  [--config routing.toml] [--port P]   # simulated upstreams, no key, no network
                                                        # (no ./routing.toml: the example in the package)
gemini-proxy check --config routing.toml [--env prod] [--no-secrets]   # validate, print routes; exit 1 on a missing key
gemini-proxy hash-key < keyfile                          # SHA-256 of a client key for [teams]
gemini-proxy report LOGFILE [--by team|task|model|lane] [--since 24h] [--format table|csv|json]
"""

from __future__ import annotations

import argparse
import os

from gemini_proxy.cli.check import DEFAULT_CONFIG, cmd_check
from gemini_proxy.cli.demo import cmd_demo
from gemini_proxy.cli.hash_key import cmd_hash_key
from gemini_proxy.cli.report import cmd_report
from gemini_proxy.cli.serve import cmd_serve

# `report`'s choices, spelled out: importing gemini_proxy.observe.report here would load its
# DDSketch into every `serve` process (memory and start-up time) for an argparse list.
# tests/test_report.py checks they match the report module's.
REPORT_GROUPS = ("lane", "model", "task", "team")
REPORT_FORMATS = ("csv", "json", "table")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemini-proxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("serve", cmd_serve, "run the proxy"),
        ("demo", cmd_demo, "run against the built-in simulated Gemini"),
        ("check", cmd_check, "validate a config and print its routes"),
    ):
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=func)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="path to routing.toml")
        if name == "check":
            p.add_argument(
                "--no-secrets",
                action="store_true",
                help="validate a config whose keys are not here (CI, image builds): missing keys are notes",
            )
        if name != "demo":
            p.add_argument(
                "--env",
                default=os.environ.get("GEMINI_PROXY_ENV") or None,
                help="apply the [env.NAME] overlay (default: $GEMINI_PROXY_ENV)",
            )
        if name != "check":
            p.add_argument("--host", default=None)
            p.add_argument("--port", type=int, default=None)
            p.add_argument("--log-file", default=None, help="write request log lines to this file, not stdout")
        if name != "demo":
            p.add_argument(
                "--workers",
                type=_positive,
                default=None,
                help="processes sharing the port, one per core (default: [server] workers, 1)",
            )
        if name == "serve":
            p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by the parent
    hk = sub.add_parser("hash-key", help="print the SHA-256 of a client key read from stdin, for [teams]")
    hk.set_defaults(func=cmd_hash_key)
    rp = sub.add_parser("report", help="cost and latency report from a JSON request log")
    rp.set_defaults(func=cmd_report)
    rp.add_argument("logfile", help="the JSON log (one request per line); - reads stdin")
    rp.add_argument("--by", choices=REPORT_GROUPS, default="team", help="group rows by (default: team)")
    rp.add_argument("--since", default=None, help="only requests since: 30m, 24h, 7d or an ISO 8601 time")
    rp.add_argument("--format", choices=REPORT_FORMATS, default="table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
