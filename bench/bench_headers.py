"""What the security-headers middleware (app/headers.py) costs per response, in process.

    .venv/bin/python -m bench.bench_headers [--requests 50000]

An application that answers a 200 with two headers and a small body, called directly and
through `SecurityHeaders`: nanoseconds per request, best of three rounds. Bounded: a fixed
number of requests per round and a wall-clock cap per loop.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from app.config import Settings
from app.headers import SecurityHeaders
from bench.bench_bodies import _scope

CAP_S = 30.0
ROUNDS = 3


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/vnd.mapbox-vector-tile"),
                        (b"etag", b'"v1"')],
        }
    )  # fmt: skip
    await send({"type": "http.response.body", "body": b"x" * 64})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def _per_request_ns(app: Any, n: int) -> float:
    scope = _scope("GET", "/tiles/incidents/8/203/113.mvt", [])
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for i in range(n):
            await app(dict(scope), _receive, _send)
            if i % 1000 == 0 and time.perf_counter() - started > CAP_S:
                n = i + 1
                break
        best = min(best, (time.perf_counter() - started) / n * 1e9)
    return best


async def main(requests: int) -> None:
    """Print ns per request without and with the middleware."""
    wrapped = SecurityHeaders(_app, Settings(environment="test"))
    bare = await _per_request_ns(_app, requests)
    layered = await _per_request_ns(wrapped, requests)
    print(f"without: {bare:.0f} ns/request; with: {layered:.0f} ns (+{layered - bare:.0f} ns)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().requests))
