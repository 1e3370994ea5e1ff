"""gemini-proxy: an OpenAI-compatible gateway in front of Google Gemini and OpenAI-compatible upstreams.

One package, one sub-package per concern; a request flows down through them and no lower
package imports a higher one (tests/test_layers.py keeps it so):

    cli         the command line: serve, demo, check, report, hash-key
    http        the aiohttp app: middlewares, handlers, the one error -> HTTP mapping
    runtime     everything built from one Config (adapters, key pools, guard, client keys)
    resilience  the attempt loop and what it consults: failures, backoff, breaker, keys, limits, lanes
    routing     model alias / task -> ordered targets; teams, residency, team quotas
    state       where shared limits and health live (memory or Redis)
    observe     the request record, the access log, metrics, cost, the report
    config      routing.toml -> frozen typed objects, parsed once
    structured  structured output: JSON Schema validation and the one corrective retry
    errors      the exception tree every layer raises (each class knows its HTTP status)
    adapters    upstream translators and their transports; imports nothing above
    responses, batch   the Responses API and batch-job dialects (pure cores, not wired yet)
"""

__version__ = "0.1.0"
