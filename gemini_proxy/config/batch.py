"""The ``[batch]`` section: where the OpenAI Batch API (``/v1/files``, ``/v1/batches``) keeps its
files and job records, how large an input file may be, how often Gemini jobs are polled, and
the batch price.

    [batch]
    dir = "batch-data"            # files and job records (relative: to the working directory)
    max_file_bytes = 209715200    # an uploaded file's limit (OpenAI's: 200 MB)
    poll_s = 30.0                 # first wait before a job is polled again ...
    poll_max_s = 600.0            # ... doubling per unchanged poll up to this
    price_factor = 0.5            # batch price = [pricing] x this (Gemini's Batch API: half)
    inline_max_bytes = 16777216   # a job this small goes inline, a bigger one through Gemini's Files API
    poller = true                 # poll here (one process at a time holds dir/poller.lock); false: API only

Why a directory: a batch outlives the process that created it (target turnaround 24 h), so a
restart must find its records and resume polling; with several replicas the directory must be
one shared volume (README "Batch API").
"""

from __future__ import annotations

from dataclasses import dataclass

from gemini_proxy.config.table import Table

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BatchConfig:
    dir: str = "batch-data"
    max_file_bytes: int = 200 * MB
    poll_s: float = 30.0
    poll_max_s: float = 600.0
    price_factor: float = 0.5
    inline_max_bytes: int = 16 * MB
    poller: bool = True


def parse(t: Table) -> BatchConfig:
    d = BatchConfig()
    cfg = BatchConfig(
        dir=t.pop("dir", str, d.dir),
        max_file_bytes=t.positive("max_file_bytes", int, d.max_file_bytes),
        poll_s=t.positive("poll_s", float, d.poll_s),
        poll_max_s=t.positive("poll_max_s", float, d.poll_max_s),
        price_factor=t.pop("price_factor", float, d.price_factor),
        inline_max_bytes=t.positive("inline_max_bytes", int, d.inline_max_bytes),
        poller=t.pop("poller", bool, d.poller),
    )
    if not cfg.dir:
        raise t.error("dir", "must not be empty", 'write e.g. dir = "/var/lib/gemini-proxy/batch"')
    if not 0 <= cfg.price_factor <= 1:
        raise t.error("price_factor", f"must be between 0 and 1, got {cfg.price_factor!r}", "Gemini's is 0.5")
    if cfg.poll_max_s < cfg.poll_s:
        raise t.error("poll_max_s", f"must be at least poll_s ({cfg.poll_s:g})", f"set poll_max_s >= {cfg.poll_s:g}")
    t.done()
    return cfg
