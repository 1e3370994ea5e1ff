"""The one place a finished request is accounted for: priced, counted in the metrics, logged.

When the response is done, the access-log middleware calls :meth:`Telemetry.emit` once. Usage
is taken from the upstream (estimated only when it gave none, and the line says so), priced
from config, handed to the app's metrics, and logged. Mandatory fields are present on every
line, failed and rejected requests included (with zero tokens when nothing was spent). Prompt
and answer text are never logged unless the ``[logging]`` config opts a team or task in.
"""

from __future__ import annotations

from typing import Any

import orjson

from gemini_proxy.config import Config
from gemini_proxy.observe.accesslog import LOG, log_access
from gemini_proxy.observe.metrics import Metrics
from gemini_proxy.observe.record import RequestRecord


class Telemetry:
    """Per-app accounting: prices, metrics, the one-time warnings. Lives on ``app[TELEMETRY]``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.unpriced_warned: set[str] = set()

    def line(self, record: RequestRecord, config: Config) -> dict[str, Any]:
        usage = record.final_usage()
        out = record.to_log(usage)
        if record.model_used is not None:
            cost = config.pricing.cost(record.upstream, record.model_used, usage)
            if cost is not None:
                cost *= record.price_factor  # the Batch API's discount (1.0 online)
            if cost is None and record.model_used not in self.unpriced_warned:
                self.unpriced_warned.add(record.model_used)
                LOG.warning(
                    "model %s has no price: its requests log cost_usd null; add [pricing.%s] to %s",
                    record.model_used,
                    orjson.dumps(record.model_used).decode(),
                    config.path,
                )
            out["cost_usd"] = None if cost is None else round(cost, 8)
            if usage.cached_tokens:  # what Gemini's cache discount took off this request
                saved = config.pricing.saved(record.upstream, record.model_used, usage)
                out["saved_usd"] = None if saved is None else round(saved, 8)
            if record.cache == "hit":  # answered from the exact cache: nothing was paid upstream
                out["cost_usd"], out["saved_usd"] = 0.0, out["cost_usd"]
        else:
            out["cost_usd"] = 0.0  # no upstream answered: nothing to pay for
        if record.capture_content and config.logging.wants_content(record.team_id, record.task_type):
            cap = config.logging.content_max_chars
            out["prompt"] = orjson.dumps(record.messages).decode()[:cap]
            out["answer"] = record.answer_text()[:cap]
        return out

    def emit(self, record: RequestRecord, config: Config) -> dict[str, Any]:
        """Account for one finished request: one log line and its metrics; returns the line.

        A bug here must not turn an answered request into a 500: it is logged, and the line
        still goes out (without cost) so the request is never missing from the log.
        """
        try:
            out = self.line(record, config)
        except Exception:
            LOG.exception("accounting failed for %s; logging it without cost", record.request_id)
            out = record.to_log()
        log_access(out)
        try:
            self.metrics.observe(record, out)
        except Exception:
            LOG.exception("metrics failed for %s", record.request_id)
        return out


def emit(record: RequestRecord) -> None:
    """A log line without pricing or metrics, for code that runs outside an app."""
    log_access(record.to_log())
