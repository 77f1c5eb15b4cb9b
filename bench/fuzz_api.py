"""The contract fuzz with a larger budget than the test suite's (tests/test_contract.py).

    .venv/bin/python -m bench.fuzz_api --max-examples 50 --incidents 3000

Schemathesis (the settings in schemathesis.toml: derandomised, every phase, checks for 5xx and
for status, media type, body schema and header conformance) against /openapi.json and then
/ogc/api of our API served by uvicorn on 127.0.0.1, over a private cluster of its own in a
temporary folder (boundaries and `--incidents` demo incidents), deleted afterwards: the fuzz
writes (incidents, principals, deletions), so it never touches the benchmark cluster. The
fuzz key is a national admin's; a spare principal takes the rotate/revoke calls aimed at it
(bench/fuzz_hooks.py), and the key is checked to work after the run. Prints the figures per
document (operations, test cases, failures, errors, time) and, with `--markdown`, the table
rows for docs/contract.md. Bounded: `--max-examples` per operation, `--max-time` per document
(Schemathesis' own), a timeout on each run; the server is stopped by PID and the cluster
deleted, even on error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.embedded import EmbeddedCluster
from bench.common import ROOT, free_port, prepare, served

DOCUMENTS = ("/openapi.json", "/ogc/api")


@dataclass(frozen=True)
class Figures:
    """What one `schemathesis run` did."""

    document: str
    operations: int
    cases: int
    failures: int
    errors: int
    seconds: float


def run(
    base: str,
    document: str,
    key: str,
    own_id: int,
    spare_id: int,
    max_examples: int,
    max_time_s: int | None,
    report: Path,
) -> Figures:
    """`schemathesis run` against one document (the output goes to this terminal)."""
    env = dict(
        os.environ, BORDERWATCH_FUZZ_PRINCIPAL=str(own_id), BORDERWATCH_FUZZ_SPARE=str(spare_id)
    )
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", "schemathesis.toml",
        "run", base + document, "--header", f"Authorization: Bearer {key}",
        "--max-examples", str(max_examples), "--report", "json",
        "--report-json-path", str(report),
    ]  # fmt: skip
    if max_time_s is not None:
        cmd += ["--max-time", str(max_time_s)]
    cap_s = (max_time_s or 3600) * 2 + 600
    subprocess.run(cmd, cwd=ROOT, env=env, timeout=cap_s, check=False)
    data = json.loads(report.read_text())
    return Figures(
        document=document,
        operations=int(data["operations"]["tested"]),
        cases=int(data["test_cases"]["generated"]),
        failures=len(data["failures"]),
        errors=len(data["errors"]),
        seconds=float(data["running_time"]),
    )


async def principals(base: str, key: str) -> tuple[int, int]:
    """The fuzz key's principal id, and a spare principal made for the run."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
        me = (await c.get("/me")).raise_for_status().json()
        spare = await c.post("/principals", json={"name": "fuzz spare", "role": "officer"})
        spare.raise_for_status()
    return int(me["id"]), int(spare.json()["principal"]["id"])


async def key_works(base: str, key: str) -> bool:
    """Whether the key still authenticates."""
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
        return (await c.get("/me")).status_code == 200


async def admin_key(url: str) -> str:
    """A national admin key on the fuzz database."""
    from app.auth import service as auth_service
    from app.config import Settings
    from app.db import create_engine, sessionmaker

    engine = create_engine(url, Settings(environment="test"))
    try:
        async with sessionmaker(engine)() as session, session.begin():
            _, key = await auth_service.create_principal(
                session=session, name="fuzz", role="admin", jurisdiction_code=None, unit=None,
                actor="bench",
            )  # fmt: skip
        return key
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-examples", type=int, default=50, help="per operation")
    parser.add_argument("--max-time", type=int, default=None, help="seconds per document")
    parser.add_argument("--incidents", type=int, default=3000)
    parser.add_argument("--markdown", action="store_true", help="print the docs table row")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="borderwatch-fuzz-"))
    home.chmod(0o755)  # the unprivileged server user must reach it
    pg = EmbeddedCluster(home=home, port=free_port())
    # one principal sends thousands of requests: no rate limits, and no failed-authentication
    # limit that would turn the rest of the run into 429s (the uvicorn child inherits these)
    os.environ.update(BORDERWATCH_TILE_RATE_LIMIT="", BORDERWATCH_AUTH_FAILURE_LIMIT="")
    results: list[Figures] = []
    alive = False
    try:
        pg.init()
        pg.start()
        url = pg.url()
        asyncio.run(prepare(url, args.incidents))
        key = asyncio.run(admin_key(url))
        with served(url) as server, tempfile.TemporaryDirectory() as tmp:
            own_id, spare_id = asyncio.run(principals(server.base, key))
            for document in DOCUMENTS:
                report = Path(tmp) / "report.json"
                results.append(
                    run(server.base, document, key, own_id, spare_id, args.max_examples,
                        args.max_time, report)
                )  # fmt: skip
            alive = asyncio.run(key_works(server.base, key))
    finally:
        pg.destroy()

    print(f"\nmax examples per operation: {args.max_examples}; incidents: {args.incidents}")
    print(f"{'document':<14} {'operations':>10} {'cases':>8} {'failures':>8} {'errors':>6} "
          f"{'time s':>7}")  # fmt: skip
    for f in results:
        print(f"{f.document:<14} {f.operations:>10} {f.cases:>8} {f.failures:>8} {f.errors:>6} "
              f"{f.seconds:>7.1f}")  # fmt: skip
    print(f"fuzz key still works: {alive}")
    if args.markdown:
        day = datetime.now(UTC).date().isoformat()
        for f in results:
            print(
                f"| {day} | `{f.document}` | {args.max_examples} | {f.operations} | {f.cases:,} |"
                f" {f.failures} | {f.errors} | {f.seconds:.0f} s |"
            )
    ok = alive and all(f.failures == 0 and f.errors == 0 for f in results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    started = time.perf_counter()
    try:
        main()
    finally:
        print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
