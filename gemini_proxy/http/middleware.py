"""Middlewares, one concern each, outermost first: access log, then errors -> OpenAI JSON.

Errors on the native Gemini surface (:func:`native_surface`) leave in Google's shape instead,
because google-genai and Gemini CLI parse that and nothing else.

The request id is minted before any middleware runs (aiohttp's ``on_response_prepare`` signal
adds it to every response, streams included), so even a 404 for an unknown path carries one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gemini_proxy.adapters.unique import unique_hex
from gemini_proxy.errors import InternalError, InvalidRequest, NotFound, PayloadTooLarge, ProxyError
from gemini_proxy.http.appkeys import METER, RECORD, REQUEST_ID, RUNTIME, TELEMETRY
from gemini_proxy.http.errors import describe, error_response, google_error_response
from gemini_proxy.observe.record import RequestRecord
from gemini_proxy.observe.tracing import Tracing

log = logging.getLogger("gemini_proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A client's own id is echoed only when it is short and printable (it lands in logs).
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

# Paths whose requests are accounted for in the access log (health checks are not).
LOGGED_PREFIXES = ("/v1/", "/v1beta/")
# Reads (GET, HEAD) and deletes that are logged too: a team's stored things - Responses answers, uploaded
# files (batch inputs and results: prompts and answers), batches (who read or deleted what is
# worth an audit line). Their ``endpoint`` is the method and the route's template, never the raw
# path (it holds an id), so the lines group by operation.
AUDITED_READS = ("/v1/responses/", "/v1/files/", "/v1/batches/")
AUDITED_LISTS = frozenset({"/v1/files", "/v1/batches"})


def native_surface(path: str) -> bool:
    """The Gemini-native paths: all of ``/v1beta/``, and ``/v1/models/{alias}:method``.

    ``GET /v1/models`` (and any ``/v1/models/{id}`` without a method) stays OpenAI's.
    """
    if path.startswith("/v1beta/"):
        return True
    return path.startswith("/v1/models/") and ":" in path.rpartition("/")[2]


def request_id_of(request: web.Request) -> str:
    rid = request.get(REQUEST_ID)
    if rid is None:
        client = request.headers.get("x-request-id", "")
        rid = client if _CLIENT_ID.match(client) else "req_" + unique_hex()
        request[REQUEST_ID] = rid
    return rid


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["x-request-id"] = request_id_of(request)


def access_log(tracing: Tracing | None = None) -> Middleware:
    """Every API request yields exactly one log record, whatever happened to it, and with
    ``tracing`` one SERVER span, ended with the record (``_emit``).

    ``tracing`` is fixed when the app is built, so with tracing off a request does not even look
    it up (bench/bench_tracing.py counts the calls on the request path). The app runs with
    ``handler_cancellation``: a client that goes away cancels its handler (and with it the
    upstream call), which reaches us as CancelledError. That is a 499, not a crash; a
    cancellation while the client is still connected is the server shutting down.
    """

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST":
            if not request.path.startswith(LOGGED_PREFIXES):
                return await handler(request)
            endpoint = request.path
        elif request.method in ("GET", "HEAD", "DELETE") and (
            request.path.startswith(AUDITED_READS) or request.path in AUDITED_LISTS
        ):
            resource = request.match_info.route.resource
            template = resource.canonical if resource is not None else "(no route)"
            endpoint = f"{request.method} {template}"
        else:
            return await handler(request)
        record = RequestRecord(request_id=request_id_of(request), endpoint=endpoint, read=request.method != "POST")
        request[RECORD] = record
        if tracing is not None:  # the request's SERVER span, ended with its log line in _emit
            resource = request.match_info.route.resource  # the route's template: one name per endpoint
            route = resource.canonical if resource is not None else ""  # no route (a 404): no client-chosen name
            record.trace = tracing.start(request.headers, request.method, route, record)
        try:
            response = await handler(request)
            if record.status_code == 0:  # a stream's handler sets its own (an error or a disconnect may end it)
                record.status_code = response.status
            if type(response) is web.Response:
                # The answer goes out first, its accounting after: the log line, metrics and cost
                # are not on the client's clock. aiohttp's own prepare and write_eof are then no-ops.
                try:
                    await response.prepare(request)
                    await response.write_eof()
                except ConnectionError:  # the client left while its answer was written
                    if record.status_code < 400:  # an error answer keeps its cause (and its metrics)
                        record.status_code, record.error_type = 499, "client_disconnected"
        except asyncio.CancelledError:
            # Draining, the server cuts what outlived the grace (closing its connection first):
            # that is a shutdown, not a client that left.
            draining = request.app[RUNTIME].draining
            gone = not draining and (request.transport is None or request.transport.is_closing())
            record.status_code = 499 if gone else 503
            record.error_type = "client_disconnected" if gone else "server_shutdown"
            _emit(request, record)
            raise
        except web.HTTPException as exc:  # redirects and the like, re-raised by `errors`
            record.status_code = exc.status
            _emit(request, record)
            raise
        except BaseException:
            record.status_code, record.error_type = 500, record.error_type or "internal_error"
            _emit(request, record)
            raise
        if record.status_code >= 400 and record.error_type is None:
            record.error_type = "http_" + str(record.status_code)
        _emit(request, record)
        return response

    return access_log


def _emit(request: web.Request, record: RequestRecord) -> None:
    """Account for the request once: its log line, metrics and trace, then its cost against the team's budget."""
    line = request.app[TELEMETRY].emit(record, request.app[RUNTIME].current.config)
    if record.trace is not None:
        try:
            record.trace.finish(line)
        except Exception:  # a tracing bug must not turn an answered request into a 500
            log.exception("tracing failed for %s", record.request_id)
    cost = line.get("cost_usd")
    if record.team_id is not None and cost:
        request.app[METER].charge(record.team_id, float(cost))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ProxyError and aiohttp's HTTP exceptions -> OpenAI error JSON (Google's on the native
    surface); anything else -> 500, logged."""
    render = google_error_response if native_surface(request.path) else error_response
    try:
        return await handler(request)
    except ProxyError as exc:
        _mark(request, exc)
        return render(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[RUNTIME].current.config.server.max_body_bytes
        err: ProxyError = PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")
    except web.HTTPNotFound:
        err = NotFound(f"no route for {request.method} {request.path}", code="not_found")
    except web.HTTPMethodNotAllowed as exc:
        err = InvalidRequest(
            f"method {request.method} is not allowed on {request.path}",
            code="method_not_allowed",
            status=405,
            headers={"Allow": ",".join(exc.allowed_methods)},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        err = InvalidRequest(exc.reason or "bad request", status=exc.status, code="http_error")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        err = InternalError("the proxy hit an internal error; it has been logged")
    _mark(request, err)
    return render(err)


def _mark(request: web.Request, exc: ProxyError) -> None:
    record: RequestRecord | None = request.get(RECORD)
    if record is not None:
        fields = describe(exc)
        record.error_type = fields["error_type"]
        record.status_code = fields["status_code"]
