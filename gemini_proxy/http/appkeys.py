"""Every typed key of the app and of a request: app-wide state lives on the Application, never in globals.

One module so that a reader finds what the app carries in one place, and so that middlewares,
handlers and the reloader share the keys without importing each other.

    app[RUNTIME]     RuntimeRef: the current Runtime (reload swaps it), and the draining flag
    app[STATE]       the shared state backend (Redis), or None for memory
    app[METER]       TeamMeter: team rpm and daily budgets (outlives reloads)
    app[TELEMETRY]   Telemetry: prices, metrics, the access log
    app[RESPONSES]   the Responses API's store (memory, or Redis with [state]); outlives reloads
    app[ANSWERS]     AnswerStore: the exact response cache (outlives reloads; Redis when shared)
    app[TRACING]     OpenTelemetry tracing, or None when it is off (observe/tracing.py)
    app[BATCHES]     BatchRunner: the Batch API's store and its poller
    request[REQUEST_ID], request[RECORD], request[TEAM]
"""

from __future__ import annotations

from aiohttp import web

from gemini_proxy.config import TeamConfig
from gemini_proxy.http.batch_poll import BatchRunner
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.observe.telemetry import Telemetry
from gemini_proxy.observe.tracing import Tracing
from gemini_proxy.routing.meter import TeamMeter
from gemini_proxy.runtime import RuntimeRef
from gemini_proxy.state.answer_store import AnswerStore
from gemini_proxy.state.backend import StateBackend
from gemini_proxy.state.responses import ResponseStore

RUNTIME = web.AppKey("runtime", RuntimeRef)
STATE: web.AppKey[StateBackend | None] = web.AppKey("shared_state")
METER = web.AppKey("team_meter", TeamMeter)
TELEMETRY = web.AppKey("telemetry", Telemetry)
RESPONSES: web.AppKey[ResponseStore] = web.AppKey("response_store")
ANSWERS = web.AppKey("answer_store", AnswerStore)
TRACING: web.AppKey[Tracing | None] = web.AppKey("tracing")
BATCHES = web.AppKey("batches", BatchRunner)

REQUEST_ID = web.RequestKey("request_id", str)
RECORD = web.RequestKey("record", RequestRecord)
TEAM = web.RequestKey("team", TeamConfig)
