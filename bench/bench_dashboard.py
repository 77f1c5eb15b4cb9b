"""The dashboard at 1 M incidents as a user sees it: the time from opening a link until the map
and every panel have settled (the page's own `window.borderwatch.settled()`), in Debian's
Chromium driven by Playwright (as tests/test_dashboard.py does: headless, WebGL on SwiftShader)
at 1366 x 768, against our API in uvicorn on 127.0.0.1 over the bench cluster's `bench`
database, with a fresh national admin key.

    .venv/bin/python -m bench.bench_dashboard --warm --before-ref 456aed4 [--rounds 2]
        [--views national,south ...] [--returning] [--json out.json]

For each view and round: a new server process (nothing kept in its caches), then the link
opened twice, each time in a fresh browser context (nothing cached in the browser): `cold` is
the first visit after the server started, `warm` the second. `--warm` installs the dashboard
warmer (app/analysis/warm.py) and opens the cold visit once it has filled the caches (what the
first visitor of the day sees); `--before-ref REF` serves app/ as it was at REF beside it (with
the warmer too under `--warm`: REF must have app/analysis/warm.py), the order alternating per
view. `--returning` adds two visits in a returning browser (`cold-ret`,
`warm-ret`): one profile on disk that opened every view once on an earlier server (its HTTP
cache, compiled scripts and GPU shader cache kept), as a command centre's browser has the
morning after. Per visit: the settle time — when the last request, refresh or map draw finished
(the page's `settledAt()`), and when `settled()` confirmed it (three calm looks 100 ms apart,
0.2–0.3 s later) —, the number of requests, and the slowest requests (Playwright's timing: when
each started after the link was opened and how long it took) so that what blocks settling shows.

The machine is shared: compare figures of one run, alternate what you compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

from bench.common import bench_key, cluster, prepare, served, served_at

INCIDENTS = 1_000_000
WIDTH, HEIGHT = 1366, 768
SETTLE_TIMEOUT_MS = 120_000
SLOWEST = 6  # requests listed per visit
CHROMIUM_ARGS = [  # WebGL without a GPU (tests/test_dashboard.py)
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--no-sandbox",
]
ALL_LAYERS = "incidents,density,hotspots,posts,borderzone,boundaries"
# name -> the link's query (the dashboard's own address-bar format, js/state.js)
VIEWS: dict[str, str] = {
    "national": "",  # the default view: all of Vietnam
    "south": "?at=106.7,10.8,8",  # the south at z8, around Hồ Chí Minh City
    "borderzone-hotspots": f"?layers={ALL_LAYERS}&at=105.5,22.0,6",  # the northern border
    "hcmc": "?at=106.70,10.78,11",  # Hồ Chí Minh City at z11
    "huu-nghi": "?at=106.705,21.96,12",  # the Hữu Nghị gate at z12
}


def warmed_app() -> FastAPI:
    """create_app() with the dashboard warmer installed (app/analysis/warm.py), for as long as
    app/main.py does not install it itself (install() runs once per application)."""
    from app.analysis import warm
    from app.main import create_app

    app = create_app()
    warm.install(app)

    @app.get("/bench/warmed", include_in_schema=False)
    async def warmed() -> dict[str, int]:
        """How many times the warmer has filled the caches (the bench waits for one)."""
        return {"rounds": int(getattr(app.state, "dashboard_warm_rounds", 0))}

    return app


async def wait_warmed(base: str, cap_s: float) -> float:
    """Seconds until the server's warmer finished its first fill (at most cap_s)."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while time.monotonic() - started < cap_s:
            r = await client.get("/bench/warmed")
            if r.status_code == 200 and r.json()["rounds"] >= 1:
                break
            await asyncio.sleep(1)
    return time.monotonic() - started


@dataclass
class Visit:
    settle_s: float  # until settled() resolved (its three calm looks included)
    settled_at_s: float  # until the last request, refresh or map draw finished (settledAt())
    requests: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _short(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def visit(open_context: Any, base: str, key: str, query: str) -> Visit:
    """Open the link in the context `open_context()` makes; the seconds until the page settled
    and until settled() resolved, and every request with its start (after the link was opened)
    and duration."""
    context = await open_context()
    await context.add_init_script("localStorage.setItem('borderwatch.lang', 'vi');")
    page = await context.new_page()
    errors: list[str] = []
    done: list[Any] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfinished", lambda r: done.append(r))
    page.on("requestfailed", lambda r: done.append(r))
    try:
        opened = time.perf_counter()
        opened_epoch_ms = time.time() * 1000
        await page.goto(f"{base}/{query}#key={key}", timeout=SETTLE_TIMEOUT_MS)
        deadline = time.monotonic() + SETTLE_TIMEOUT_MS / 1000
        while not await page.evaluate("Boolean(window.borderwatch)"):
            if time.monotonic() > deadline:
                raise RuntimeError("the page never defined window.borderwatch")
            await asyncio.sleep(0.02)
        # how long before settled() resolved the page settled, measured in the page (no clock
        # compared across processes); null: a page from before settledAt() (--before-ref)
        gap_ms = await page.evaluate(
            f"window.borderwatch.settled({SETTLE_TIMEOUT_MS}).then(() =>"
            " window.borderwatch.settledAt ?"
            " performance.now() - window.borderwatch.settledAt() : null)"
        )
        settle_s = time.perf_counter() - opened
        at_s = settle_s if gap_ms is None else settle_s - gap_ms / 1000
        out = Visit(settle_s, at_s, errors=errors)
        for r in done:
            timing = r.timing
            start = timing.get("startTime", 0.0)
            end = timing.get("responseEnd", -1.0)
            out.requests.append(
                {
                    "url": _short(r.url),
                    "start_ms": round(start - opened_epoch_ms),
                    "ms": round(end) if end >= 0 else None,
                    "failed": r.failure is not None,
                }
            )
        return out
    finally:
        await context.close()


def _report(name: str, kind: str, v: Visit) -> None:
    slow = sorted(v.requests, key=lambda r: -(r["ms"] or 0))[:SLOWEST]
    print(
        f"{name:<20} {kind:<5} settled {v.settled_at_s:6.2f} s (confirmed {v.settle_s:.2f} s)"
        f"  {len(v.requests):3d} requests"
        + (f"  {len(v.errors)} console errors" if v.errors else ""),
        file=sys.stderr,
    )
    for r in slow:
        print(
            f"      {r['ms'] or -1:6d} ms from {r['start_ms']:6d} ms  {r['url'][:150]}",
            file=sys.stderr,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="server starts per view")
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated view names")
    parser.add_argument(
        "--warm", action="store_true",
        help="install the dashboard warmer (app/analysis/warm.py) and open the cold visit once"
        " it has filled the caches",
    )  # fmt: skip
    parser.add_argument(
        "--before-ref",
        help="also serve app/ as it was at this git ref (warmed too under --warm), alternating",
    )
    parser.add_argument("--warm-cap", type=float, default=600.0, help="seconds to wait at most")
    parser.add_argument(
        "--returning", action="store_true",
        help="also visit in a returning browser: one profile (HTTP cache, compiled scripts and"
        " shaders) that opened every view once on an earlier server, as a command centre's"
        " browser did the day before",
    )  # fmt: skip
    parser.add_argument("--json", help="write every visit here")
    args = parser.parse_args()
    names = [v for v in args.views.split(",") if v]
    unknown = set(names) - set(VIEWS)
    if unknown:
        parser.error(f"unknown views {sorted(unknown)}; known: {', '.join(VIEWS)}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (make setup)")
    from playwright.async_api import async_playwright

    url = cluster().url("bench")
    await prepare(url, INCIDENTS)
    key = await bench_key(url, "admin", name="bench dashboard")
    targets = ["now"] + (["before"] if args.before_ref else [])
    kinds = ["cold", "warm"] + (["cold-ret", "warm-ret"] if args.returning else [])
    results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
        t: {n: {k: [] for k in kinds} for n in names} for t in targets
    }
    warmed_s: list[float] = []

    def serve(target: str) -> Any:
        factory = "bench.bench_dashboard:warmed_app" if args.warm else "app.main:create_app"
        if target == "before":  # with the warmer too: the cold visits compare like with like
            return served_at(url, args.before_ref, node_modules=True, factory=factory)
        return served(url, factory=factory)

    from playwright.async_api import ViewportSize

    viewport = ViewportSize(width=WIDTH, height=HEIGHT)
    profile = tempfile.TemporaryDirectory(prefix="bench-dashboard-profile-")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)

        def fresh() -> Any:
            return browser.new_context(viewport=viewport)

        def returning() -> Any:
            return p.chromium.launch_persistent_context(
                profile.name, executable_path=chromium, args=CHROMIUM_ARGS, viewport=viewport
            )

        try:
            if args.returning:  # the day before: every view opened once in the profile
                with serve("now") as server:
                    for name in names:
                        await visit(returning, server.base, key, VIEWS[name])
            for turn in range(args.rounds):
                order = names[turn % len(names) :] + names[: turn % len(names)]
                for k, name in enumerate(order):
                    pair = targets if (turn + k) % 2 == 0 else targets[::-1]
                    for target in pair:
                        with serve(target) as server:
                            if args.warm:
                                warmed_s.append(await wait_warmed(server.base, args.warm_cap))
                                print(f"  {target} warmed in {warmed_s[-1]:.0f} s", file=sys.stderr)
                            for kind in kinds:
                                opener = returning if kind.endswith("-ret") else fresh
                                if target == "before" and opener is returning:
                                    continue  # the profile knows the current code only
                                v = await visit(opener, server.base, key, VIEWS[name])
                                _report(f"{name} ({target})", kind, v)
                                results[target][name][kind].append(
                                    {"settle_s": v.settle_s, "settled_at_s": v.settled_at_s,
                                     "requests": v.requests, "errors": v.errors}
                                )  # fmt: skip
        finally:
            await browser.close()
            profile.cleanup()
    print(
        "\nsettled (settledAt(); settled() confirmed 0.2-0.3 s later), median [runs], seconds;"
        " -ret: the returning browser"
    )
    print(f"target  view                 {'  '.join(f'{k:<26}' for k in kinds)}")
    for target in targets:
        for name in names:
            row = []
            for kind in kinds:
                runs = [r["settled_at_s"] for r in results[target][name][kind]]
                if not runs:
                    row.append(f"{'-':<26}")
                    continue
                median = statistics.median(runs)
                row.append(f"{median:5.2f} [{', '.join(f'{x:.2f}' for x in runs)}]".ljust(26))
            print(f"{target:<7} {name:<20} {'  '.join(row)}")
    if warmed_s:
        print(f"warmer's first fill: {', '.join(f'{x:.0f}' for x in warmed_s)} s")
    if args.json:
        out = json.dumps(
            {"views": VIEWS, "results": results, "warmed_s": warmed_s},
            ensure_ascii=False, indent=1,
        )  # fmt: skip
        await asyncio.to_thread(Path(args.json).write_text, out, encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
