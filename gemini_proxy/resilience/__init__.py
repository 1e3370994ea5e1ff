"""Everything between a routed request and an upstream call: the attempt loop and what it consults.

attempts.py / streams.py  the loop over targets (fills an Outcome, outcome.py) for a Job (job.py)
failures.py               THE table: failure -> class -> retry | next | stop -> what the client gets
refusals.py               the proxy's own "not now": limit, no key, circuit open, unsupported
backoff.py                how long to wait before a retry; breaker.py, lanes.py, limits.py,
                          shared_limits.py, keys/ (sources, health, pool, gate), guard.py holds them per Runtime
"""
