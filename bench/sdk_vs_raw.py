"""google-genai's async client versus the proxy's raw aiohttp + orjson transport, on the same fake.

Issue 3 asks to keep whichever is faster on the hot path. Both talk to the bench fake (its own
process, on the other core) one call at a time; we report wall microseconds and CPU
microseconds of this process per call (CPU is the figure that decides throughput on a busy
core). Four variants per mode:

- ``raw``: aiohttp POST + orjson parse (GeminiAdapter's transport, no translation)
- ``adapter``: adapters.gemini.GeminiAdapter end to end (translation both ways included)
- ``sdk``: client.aio.models.generate_content[_stream] with the same request, typed response
- ``sdk+translate``: the SDK plus the same translation both ways, what an SDK-based adapter costs

The SDK runs with an aiohttp session, retries off, automatic function calling off,
HttpOptions(base_url=fake, api_version="v1beta"). Run: ``python -m bench.sdk_vs_raw``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from google import genai
from google.genai import types

from bench import stack
from bench.fake import MODEL
from bench.run import RESULTS, openai_body
from gemini_proxy.adapters import sse
from gemini_proxy.adapters.base import Call, StreamState, Upstream
from gemini_proxy.adapters.gemini import GeminiAdapter, translate

Variant = Callable[[], Awaitable[Any]]


def _sdk_config(request: dict[str, Any]) -> types.GenerateContentConfig:
    """The translated request's settings as the SDK's typed config (the SDK takes camelCase too)."""
    return types.GenerateContentConfig.model_validate(
        {
            **request.get("generationConfig", {}),
            "systemInstruction": request.get("systemInstruction"),
            "automaticFunctionCalling": {"disable": True},
        }
    )


def variants(fake_url: str, session: aiohttp.ClientSession, stream: bool) -> dict[str, Variant]:
    body = openai_body("bench-gemini", stream)
    up = Upstream(name="fake", kind="gemini", base_url=fake_url)
    adapter = GeminiAdapter(up, session)
    key = stack.KEY
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    url = f"{fake_url}/v1beta/models/{MODEL}:{method}"
    headers = {"Content-Type": "application/json", "x-goog-api-key": key}
    client = genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=fake_url,
            api_version="v1beta",
            aiohttp_client=session,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )

    def call() -> Call:
        return Call(model=MODEL, body=body, request_id="bench", api_key=key, stream=stream, include_usage=True)

    async def raw() -> Any:
        payload = orjson.dumps(translate.build_request(MODEL, body))
        async with session.post(url, data=payload, headers=headers) as resp:
            if not stream:
                return orjson.loads(await resp.read())
            return [orjson.loads(data) async for data in sse.events(resp)]

    async def via_adapter() -> Any:
        if not stream:
            return await adapter.complete(call())
        return [chunk async for chunk in adapter.stream(call(), StreamState())]

    async def sdk(translate_too: bool) -> Any:
        request = translate.build_request(MODEL, body)
        config = _sdk_config(request)
        contents: Any = request["contents"]
        if not stream:
            resp = await client.aio.models.generate_content(model=MODEL, contents=contents, config=config)
            if translate_too:
                data = resp.model_dump(mode="json", by_alias=True, exclude_none=True)
                return translate.completion_from(data, model=MODEL, completion_id="chatcmpl-x", upstream="fake")
            return resp
        tr = translate.StreamTranslator(model=MODEL, completion_id="chatcmpl-x", upstream="fake")
        out: list[Any] = []
        async for chunk in await client.aio.models.generate_content_stream(
            model=MODEL, contents=contents, config=config
        ):
            if translate_too:
                out += [
                    orjson.dumps(c) for c in tr.feed(chunk.model_dump(mode="json", by_alias=True, exclude_none=True))
                ]
            else:
                out.append(chunk)
        return out

    return {
        "raw": raw,
        "adapter": via_adapter,
        "sdk": lambda: sdk(False),
        "sdk+translate": lambda: sdk(True),
    }


async def measure(fn: Variant, calls: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per call over ``calls`` sequential calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - wall) * 1e6 / calls, (time.process_time() - cpu) * 1e6 / calls


async def run(fake_url: str, calls: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        for stream in (False, True):
            fns = variants(fake_url, session, stream)
            # Check every variant gives a sensible answer before timing it.
            for name, fn in fns.items():
                if not await fn():
                    raise RuntimeError(f"{name} returned nothing")
                await measure(fn, max(20, calls // 10))  # warm-up
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
            for _ in range(rounds):  # interleaved rounds: drift on a shared machine hits all alike
                for name, fn in fns.items():
                    samples[name].append(await measure(fn, calls))
            for name, got in samples.items():
                rows.append(
                    {
                        "mode": "stream" if stream else "json",
                        "variant": name,
                        "wall_us": round(statistics.median(w for w, _ in got), 1),
                        "cpu_us": round(statistics.median(c for _, c in got), 1),
                        "cpu_us_min": round(min(c for _, c in got), 1),
                        "cpu_us_max": round(max(c for _, c in got), 1),
                    }
                )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | variant | wall µs/call | CPU µs/call (median, min-max) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['variant']} | {r['wall_us']:.0f} | "
            f"{r['cpu_us']:.0f} ({r['cpu_us_min']:.0f}-{r['cpu_us_max']:.0f}) |"
        )
    for mode in ("json", "stream"):
        by = {r["variant"]: r for r in rows if r["mode"] == mode}
        ratio = by["sdk+translate"]["cpu_us"] / by["adapter"]["cpu_us"]
        faster = "raw adapter" if ratio > 1 else "SDK"
        lines.append(f"\n{mode}: {faster} is faster; SDK+translate costs {ratio:.2f}x the adapter's CPU per call")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_vs_raw", description=__doc__)
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "sdk_vs_raw.json"))
    args = parser.parse_args(argv)
    if stack.can_pin():
        os.sched_setaffinity(0, {0})  # the client here, the fake on core 1
    if os.geteuid() == 0:
        os.nice(stack.NICE)  # as bench.run does: other work on a shared machine disturbs us less
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        fake = stack.start_fake(Path(tmp))
        try:
            rows = asyncio.run(run(f"http://127.0.0.1:{fake.port}", args.calls, args.rounds))
        finally:
            fake.stop()
    result = {
        "command": "python -m bench.sdk_vs_raw " + " ".join(argv if argv is not None else sys.argv[1:]),
        "genai_version": genai.__version__,
        "aiohttp_version": aiohttp.__version__,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
