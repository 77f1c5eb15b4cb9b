"""The emerging-hot-spot tile layer on the 1 M bench cluster: the first tile (the cube computed:
GET /analysis/emerging-hotspots' defaults over the border zone, 5 km cells) against the tiles
after it (the cube kept per filter and version in the process).

    .venv/bin/python -m bench.bench_emerging_tiles [--rounds 2] [--ref REF]

Each round starts a fresh uvicorn process (one worker) serving this checkout, or git `ref`
(so nothing is kept from an earlier round) and, for the default span (the last 24 complete
months) and for the issue's 36 months (December 2023 to November 2026):
1. the first tile (z7 over An Giang's border) with the layer's version from its TileJSON,
2. the same tile again (made from the kept cube), median of 10,
3. 12 other tiles along the border at z7-z9, each once (kept cube), median,
4. a revalidation (If-None-Match: 304), median of 10,
and, for comparison, one GET /analysis/emerging-hotspots with the same span (the analysis
alone, its grid already kept). Ratios are within one round (the machine is shared: absolute
figures move with the others' load).

Bounded: a fixed number of requests, each with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from typing import Any

import httpx

from bench.common import admin_key, cluster, served, served_at

SPAN36 = "2023-12-01T00:00:00+07:00/2026-12-01T00:00:00+07:00"  # 36 local months
HOME = (105.15, 10.63)  # An Giang, on the Cambodian border
ALONG = [  # places on or near the land border, north to south
    (103.97, 22.50), (104.98, 22.82), (105.70, 23.05), (106.25, 22.85), (106.75, 21.85),
    (107.35, 21.60), (103.10, 21.70), (104.45, 20.20), (105.20, 18.70), (106.55, 16.55),
    (107.55, 14.60), (106.20, 11.35),
]  # fmt: skip
LAYER = "emerging-hotspots"


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    return (
        int((lon + 180) / 360 * n),
        int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n),
    )


def timed(c: httpx.Client, path: str, params: dict[str, Any], **kw: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    r = c.get(path, params=params, **kw)
    elapsed = time.perf_counter() - t
    assert r.status_code in (200, 304), r.text[:500]
    return elapsed, r


def one_span(c: httpx.Client, span: str | None) -> dict[str, Any]:
    extra = {"datetime": span} if span else {}
    doc = c.get(f"/tiles/{LAYER}.json", params=extra).json()
    v = doc["data_version"]
    params = {"v": v, **extra}
    x, y = tile_of(*HOME, 7)
    path = f"/tiles/{LAYER}/7/{x}/{y}.mvt"
    first, r = timed(c, path, params)
    size = len(r.content)
    tag = r.headers["etag"]
    same = [timed(c, path, params)[0] for _ in range(10)]
    others = []
    for k, (lon, lat) in enumerate(ALONG):
        z = 7 + k % 3
        tx, ty = tile_of(lon, lat, z)
        others.append(timed(c, f"/tiles/{LAYER}/{z}/{tx}/{ty}.mvt", params)[0])
    revalidate = [timed(c, path, params, headers={"If-None-Match": tag})[0] for _ in range(10)]
    analysis, body = timed(c, "/analysis/emerging-hotspots", extra)
    fc = body.json()
    cached = statistics.median(same)
    return {
        "span": f"{fc['steps'][0]}..{fc['steps'][-1]} ({len(fc['steps'])} months)",
        "cells": fc["cells"],
        "incidents": fc["incidents"],
        "first_tile_s": round(first, 3),
        "tile_bytes": size,
        "same_tile_median_ms": round(cached * 1000, 1),
        "other_tiles_median_ms": round(statistics.median(others) * 1000, 1),
        "other_tiles_max_ms": round(max(others) * 1000, 1),
        "revalidate_304_median_ms": round(statistics.median(revalidate) * 1000, 1),
        "analysis_alone_s": round(analysis, 3),
        "first_over_cached": round(first / cached),
        "first_over_analysis": round(first / analysis, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ref", help="the git ref served (default: this checkout)")
    args = parser.parse_args()
    url = cluster().url("bench")
    key = asyncio.run(admin_key(url))
    for n in range(args.rounds):
        with (
            served_at(url, args.ref) if args.ref else served(url) as s,
            httpx.Client(
                base_url=s.base, timeout=180, headers={"Authorization": f"Bearer {key}"}
            ) as c,
        ):
            for span in (None, SPAN36):
                got = one_span(c, span)
                print(f"round {n + 1}, {'default span' if span is None else '36 months'}: {got}")


if __name__ == "__main__":
    main()
