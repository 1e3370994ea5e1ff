"""The aiohttp server: app and middlewares, handlers per endpoint, the shared handler flow, errors -> HTTP.

A request: middleware.py (request id, access log, errors) -> auth.py (team) -> handlers/*
(body.py reads and bounds it, request_check.py checks it against OpenAI's types) -> flow.py
(route, deadline, the attempt loop, the record) -> answer.py (headers, JSON or SSE).
"""
