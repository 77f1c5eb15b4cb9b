"""A GIS client loading a whole layer: ogr2ogr pages through ~50 000 incidents of the 1 M
benchmark database over OGC API – Features, as QGIS does when a layer is added.

    .venv/bin/python -m bench.bench_ogr2ogr [--incidents 1000000]

The filter is chosen from the data so that about TARGET incidents match; the GeoPackage must
hold exactly as many features as SQL counts, with no duplicate id. Reports wall time and features/s
for a few page sizes. Bounded: each ogr2ogr run has a timeout; the server is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pyogrio
from sqlalchemy import text

from app.config import Settings
from app.db import create_engine
from bench.common import admin_key, cluster, prepare, server

TARGET = 50_000
TIMEOUT_S = 600
PAGE_SIZES = (1000, 5000, 10_000)


async def busy_interval(url: str) -> tuple[str, int]:
    """A datetime interval (whole days, from the newest incident backwards) holding about
    TARGET incidents, and how many it holds (counted in SQL, not by the API)."""
    engine = create_engine(url, Settings(environment="test"))
    try:
        async with engine.connect() as conn:
            start = (
                await conn.execute(
                    text(
                        "SELECT date_trunc('day', occurred_at) FROM incident"
                        " WHERE deleted_at IS NULL ORDER BY occurred_at DESC"
                        " OFFSET :n LIMIT 1"
                    ),
                    {"n": TARGET},
                )
            ).scalar_one()
            n = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM incident"
                        " WHERE deleted_at IS NULL AND occurred_at >= :start"
                    ),
                    {"start": start},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    return f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/..", int(n)


def ogr2ogr(base: str, key: str, dt: str, page: int, out: Path) -> float:
    """Copy the incidents matching `dt` into `out`; returns the wall time in seconds."""
    cmd = [
        "ogr2ogr", "--config", "GDAL_HTTP_HEADERS", f"Authorization: Bearer {key}",
        "-f", "GPKG", str(out), f"OAPIF:{base}/ogc/collections/incidents?datetime={dt}",
        "-oo", f"PAGE_SIZE={page}", "-nln", "incidents",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=TIMEOUT_S)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, default=1_000_000)
    args = parser.parse_args()
    if shutil.which("ogr2ogr") is None:
        raise SystemExit("ogr2ogr is missing: bash scripts/install-system-deps.sh")
    c = cluster()
    url = c.url("bench")
    asyncio.run(prepare(url, args.incidents))
    key = asyncio.run(admin_key(url))
    dt, matched = asyncio.run(busy_interval(url))
    with server(url) as base, tempfile.TemporaryDirectory() as tmp:
        print(f"incidents with datetime={dt}: {matched:,} (SQL count)")
        for page in PAGE_SIZES:
            out = Path(tmp) / f"p{page}.gpkg"
            secs = ogr2ogr(base, key, dt, page, out)
            ids = pyogrio.read_dataframe(out, columns=["id"], read_geometry=False)["id"]
            ok = len(ids) == matched and ids.nunique() == matched
            print(
                f"  PAGE_SIZE={page}: {len(ids):,} features ({ids.nunique():,} distinct)"
                f" in {secs:.1f} s = {len(ids) / secs:,.0f} features/s"
                f" {'OK' if ok else 'MISMATCH'}"
            )


if __name__ == "__main__":
    main()
