"""Prometheus metrics, observed in one place: from the finished RequestRecord.

No other module calls a metric: everything a request did is on its record, and
:meth:`Metrics.observe` turns it into counters and histograms when the log line is emitted,
so the log and the metrics can never disagree. Each app owns its ``CollectorRegistry`` (not
the process-global one), so two apps in one process - tests, reloads - never share counts.

Label values are bounded: team, task and model come from config, but a literal
``upstream:model`` or a client's alias is free text, so each label keeps at most
``max_label_values`` distinct values and folds the rest into ``"other"``. No request ids.

Modules that own live state (lanes, limiters) export it without importing this one's
internals: register ``(name, snapshot)`` where ``snapshot()`` returns gauges, and a custom
collector reads it at scrape time (see :meth:`Metrics.register_source`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gemini_proxy.observe.record import RequestRecord

log = logging.getLogger("gemini_proxy")

PREFIX = "gemini_proxy"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds. LLM calls range from ~100 ms (a short flash answer) to minutes (long thinking).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)

_TTM = ["team", "task", "model"]
_TTMS = [*_TTM, "status"]

# A snapshot maps a gauge name to a value, or to {label value: value} (e.g. per lane).
Snapshot = Mapping[str, float | Mapping[str, float]]


class _Bounded:
    """First N distinct values of each label pass through; the rest become "other"."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: dict[str, set[str]] = {}

    def __call__(self, label: str, value: str | None) -> str:
        text = value or "-"
        seen = self.seen.setdefault(label, set())
        if text in seen:
            return text
        if len(seen) >= self.limit:
            return "other"
        seen.add(text)
        return text


class _Sources(Collector):
    """Reads every registered snapshot at scrape time; a failing snapshot never breaks /metrics."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, str, Callable[[], Snapshot]]] = []

    def collect(self) -> Iterator[Metric]:
        for name, label, snapshot in self.sources:
            try:
                values = snapshot()
            except Exception:
                log.exception("metrics source %s failed; its gauges are skipped this scrape", name)
                continue
            for key, value in values.items():
                metric = f"{PREFIX}_{name}_{key}"
                if isinstance(value, Mapping):
                    family = GaugeMetricFamily(metric, f"{name} {key} (from {name}.snapshot())", labels=[label])
                    for label_value, v in value.items():
                        family.add_metric([str(label_value)], float(v))
                else:
                    family = GaugeMetricFamily(metric, f"{name} {key} (from {name}.snapshot())", value=float(value))
                yield family


class Metrics:
    def __init__(self, max_label_values: int = 100) -> None:
        self.registry = CollectorRegistry()
        self._label = _Bounded(max_label_values)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "Requests by team, task, model used and status", _TTMS, registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "Whole-request latency, all attempts included",
            ["task", "model", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            f"{PREFIX}_ttft_seconds", "Streams: time to first byte", ["task", "model"], buckets=TTFT_BUCKETS, registry=r
        )
        self.tokens = Counter(
            f"{PREFIX}_tokens",
            "Tokens by kind: input (incl. cached), output (incl. thinking), cached, thinking",
            [*_TTM, "kind"],
            registry=r,
        )
        self.cost = Counter(f"{PREFIX}_cost_usd", "Spend in USD (priced models only)", _TTM, registry=r)
        self.unpriced = Counter(
            f"{PREFIX}_unpriced_requests", "Answered requests whose model has no price", ["model"], registry=r
        )
        self.estimated = Counter(
            f"{PREFIX}_usage_estimated_requests", "Answers without upstream usage (estimated)", ["model"], registry=r
        )
        self.retries = Counter(f"{PREFIX}_retries", "Attempts beyond the first", ["task", "model"], registry=r)
        self.fallbacks = Counter(
            f"{PREFIX}_fallbacks", "Requests answered by a fallback target", ["task", "model", "reason"], registry=r
        )
        self.upstream_429 = Counter(
            f"{PREFIX}_upstream_rate_limited",
            "Upstream 429 attempts by the limit named (minute, day, unknown)",
            ["upstream", "limit"],
            registry=r,
        )
        self.rejected_429 = Counter(
            f"{PREFIX}_rate_limited_responses", "429 responses to clients by limit", ["limit"], registry=r
        )
        self.schema_violations = Counter(
            f"{PREFIX}_schema_violations",
            "Answers that failed the requested JSON schema",
            ["task", "model"],
            registry=r,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Time a request waited for a slot in its lane",
            ["lane"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
            registry=r,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._ones: dict[tuple[str | None, str | None, str | None, int, bool, bool], _One] = {}
        self._sources = _Sources()
        r.register(self._sources)
        # `serve --workers N` (gemini_proxy/cli/workers.py) sets PROMETHEUS_MULTIPROC_DIR: then
        # prometheus_client keeps every counter and histogram in a file per process, and a
        # scrape answers the sum over every worker's files, plus this worker's live gauges.
        self._workers: CollectorRegistry | None = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self._workers = CollectorRegistry()
            MultiProcessCollector(self._workers)
            self._workers.register(self._sources)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(...)``, cached: prometheus_client's lookup takes a lock and builds keys on
        every call, and this runs once per request on the event loop. Bounded like the labels."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def register_source(self, name: str, snapshot: Callable[[], Snapshot], label: str = "name") -> None:
        """Export live gauges: ``snapshot()`` -> {"queue_depth": {"batch": 3.0}, "workers": 4.0}.

        Exposed as ``gemini_proxy_{name}_{key}{label="..."}``; called at every scrape, so it
        must be cheap and must not block (it runs on the event loop).
        """
        self._sources.sources.append((name, label, snapshot))

    def render(self) -> bytes:
        if self._workers is not None:
            return generate_latest(self._workers)
        return generate_latest(self.registry)

    def observe(self, record: RequestRecord, line: Mapping[str, Any]) -> None:
        """Everything a request did, from its record and its finished log line."""
        # The model that answered; for a failure, the route's first target; "-" when none was tried.
        model = record.model_used or (record.attempts[0].model if record.attempts else None)
        # A Batch API line's latency is its batch's turnaround (hours): it would swamp the online
        # latency series (no lane label there), so batch lines count everywhere but in these two;
        # so do audited reads (a client polling a batch is not a model request).
        timed = record.batch_id is None and not record.read
        one = self._one(record.team_id, record.task_type, model, record.status_code, record.stream, timed)
        one.requests.inc()
        if one.latency is not None:
            one.latency.observe(line["latency_ms"] / 1000.0)
            if line["ttft_ms"] is not None:
                self._child(self.ttft, one.task, one.model).observe(line["ttft_ms"] / 1000.0)
        # The rest only when there is something to count: a series is made on its first count,
        # so /metrics never shows empty ones (cached tokens on a model that never caches...).
        for kind in _TOKEN_KINDS:
            n = line[kind + "_tokens"]
            if n:
                self._child(self.tokens, one.team, one.task, one.model, kind).inc(n)
        cost = line["cost_usd"]
        if cost:
            self._child(self.cost, one.team, one.task, one.model).inc(cost)
        elif cost is None:
            self._child(self.unpriced, one.model).inc()
        if line["usage_estimated"]:
            self._child(self.estimated, one.model).inc()
        # retry_count 0 means one attempt at most: its 429 is the only one there can be.
        limited = record.status_code == 429 or bool(record.attempts and record.attempts[0].status == 429)
        if record.retry_count or record.fallback_used or limited or record.schema_violations:
            self._rare(record, one.task, one.model)
        if record.queue_wait_ms is not None:
            self._child(self.queue_wait, self._label("lane", record.lane)).observe(record.queue_wait_ms / 1000.0)

    def _one(
        self, team: str | None, task: str | None, model: str | None, status: int, stream: bool, timed: bool
    ) -> _One:
        """The bounded labels and the two series every request touches, looked up once per combination.

        Bounding three labels and finding two children takes ~8 lookups (each a lock and a tuple
        in prometheus_client); a request repeats the combination of the ones before it, so one
        dict lookup finds them. Past ``_ONES_MAX`` combinations they are not kept.
        """
        key = (team, task, model, status, stream, timed)
        one = self._ones.get(key)
        if one is None:
            b = self._label
            team_l, task_l, model_l = b("team", team), b("task", task), b("model", model)
            one = _One(
                team=team_l,
                task=task_l,
                model=model_l,
                requests=self._child(self.requests, team_l, task_l, model_l, str(status)),
                latency=self._child(self.latency, task_l, model_l, "true" if stream else "false") if timed else None,
            )
            if len(self._ones) < _ONES_MAX:
                self._ones[key] = one
        return one

    def _rare(self, record: RequestRecord, task: str, model: str) -> None:
        """What only a retried, failed-over, rate-limited or schema-breaking request adds."""
        b = self._label
        if record.retry_count:
            self._child(self.retries, task, model).inc(record.retry_count)
        if record.fallback_used:
            self._child(self.fallbacks, task, model, b("reason", record.fallback_reason)).inc()
        for attempt in record.attempts:
            if attempt.status == 429:
                self._child(self.upstream_429, b("upstream", attempt.upstream), attempt.limit or "unknown").inc()
        if record.status_code == 429:
            self._child(self.rejected_429, b("limit", record.error_type)).inc()
        if record.schema_violations:
            self._child(self.schema_violations, task, model).inc(record.schema_violations)


_TOKEN_KINDS = ("input", "output", "cached", "thinking")
# Label combinations whose children are kept (team x task x model x status x stream x timed in use).
_ONES_MAX = 4096


@dataclass(frozen=True, slots=True)
class _One:
    """One (team, task, model, status, stream, timed): its bounded labels and its two series."""

    team: str
    task: str
    model: str
    requests: Any
    latency: Any  # None: not timed (a Batch API line, an audited read)
