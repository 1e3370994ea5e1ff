"""``gemini-proxy report``: cost and latency from a JSON request log (gemini_proxy/observe/report.py)."""

from __future__ import annotations

import argparse
import sys


def cmd_report(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the CLI module is what `serve` starts from, and the report's
    # DDSketch (with its dependencies) has no business in a serving process's memory.
    from gemini_proxy.observe.report import FORMATS, aggregate, parse_since, read_lines

    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = aggregate(read_lines(args.logfile), by=args.by, since=since)
    except OSError as exc:
        print(f"error: cannot read {args.logfile}: {exc.strerror}", file=sys.stderr)
        return 1
    sys.stdout.write(FORMATS[args.format](report))
    return 0
