"""/metrics across several API processes: prometheus_client's multiprocess mode.

With `borderwatch serve --workers N` (N > 1) each worker writes its metrics to memory-mapped
files in one directory (PROMETHEUS_MULTIPROC_DIR), and a scrape, whichever worker answers it,
reads and merges the files of every worker (docs/observability.md, "Several processes"):

- `prepare(directory(settings))`, in `serve` before any worker starts: the directory (under the
  data directory, mode 0700, owned by us) created and emptied — files of an earlier run would
  be counted again;
- counters and histograms (the middleware's, statement timeouts, import rows) go to the files
  as they are updated; prometheus_client picks its file-backed values when the environment
  variable is set before it is imported, as it is in a worker uvicorn spawns;
- what a single process reads when scraped (the pool, the live feed's subscribers, the rate
  limiters' refusals, the replicas) is copied by each worker into file-backed gauges and
  counters every MIRROR_S (`Mirror`), and by the scraping worker just before it answers;
  each gauge merged as GAUGE_MODES says;
- a worker that exits: `Supervisor` (uvicorn's, plus this) removes its live gauges
  (`mark_process_dead`) once it has reaped it; `exposition` does the same for any worker it
  finds gone (a supervisor that does not know about this, e.g. plain `uvicorn --workers` in the
  Docker image). Its counters stay: a counter is the total since the start of the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.samples import Sample
from uvicorn.supervisors import Multiprocess

from app.config import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
SUBDIR = "metrics"  # under the settings' data directory
MIRROR_S = 1.0  # how often a worker copies its pool, feed and limiter figures to its files

# how the figures each worker reads from its own objects are merged. live…: a worker that has
# exited no longer counts (its file is removed). WORST: NaN if any worker's is NaN (its last
# check failed), else the largest (kept per worker, merged in `exposition`)
WORST = "worst"
GAUGE_MODES: dict[str, str] = {
    # connections, waiting requests, open streams: the service's total is the sum
    "borderwatch_db_pool_connections": "livesum",
    "borderwatch_db_pool_waiting": "livesum",
    "borderwatch_live_feed_subscribers": "livesum",
    # 1 only when every worker reads from the replica: any worker that skips it shows 0
    "borderwatch_db_replica_up": "livemin",
    # each worker checks each replica on its own: the furthest behind any of them saw it
    "borderwatch_db_replica_lag_seconds": WORST,
}
# a gauge not listed above is kept per worker (a `pid` label) rather than merged wrongly
DEFAULT_MODE = "liveall"
LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")

log = logging.getLogger("borderwatch.metrics")


def enabled() -> bool:
    """Whether this process writes its metrics to the shared directory."""
    return bool(os.environ.get(ENV))


def use_files() -> None:
    """Make prometheus_client keep every metric created from now on in the directory's files
    (it decides when first imported; this covers an import before the variable was set)."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def directory(settings: Settings) -> Path:
    """The metrics directory of `serve --workers N`: PROMETHEUS_MULTIPROC_DIR when the operator
    set it (a tmpfs, say), else `<data_dir>/metrics`."""
    given = os.environ.get(ENV)
    return Path(given) if given else settings.data_dir / SUBDIR


def prepare(path: Path) -> Path:
    """Create `path` (mode 0700) or check it is a directory of ours, not a symbolic link, and
    make it 0700; then remove every file in it. Returns its absolute path."""
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(f"the metrics directory {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise RuntimeError(f"the metrics directory {path} belongs to another user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)  # never group- or world-writable: the files are counted as they are
    for entry in path.iterdir():
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
    return path


class Supervisor(Multiprocess):
    """uvicorn's supervisor; each worker it has reaped (died, killed after a failed ping, or
    replaced on SIGHUP / SIGTTOU) has its live gauges removed at once."""

    def __init__(self, *args: Any, metrics_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics_dir = metrics_dir

    def _forget_gone(self, call: Callable[[], None]) -> None:
        before = {p.pid for p in self.processes}
        call()
        for pid in before - {p.pid for p in self.processes}:
            if pid is not None:
                mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def keep_subprocess_alive(self) -> None:
        self._forget_gone(super().keep_subprocess_alive)

    def restart_all(self) -> None:
        self._forget_gone(super().restart_all)

    def handle_ttou(self) -> None:
        self._forget_gone(super().handle_ttou)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not one of our workers, but it exists
        return True
    return True


def forget_dead(path: str) -> None:
    """Remove the live gauges of workers that no longer exist (a supervisor that does not call
    mark_process_dead, or a scrape between a worker's death and its supervisor's next look)."""
    for name in os.listdir(path):
        found = LIVE_FILE.fullmatch(name)
        if found and not _alive(int(found[1])):
            mark_process_dead(int(found[1]), path)  # type: ignore[no-untyped-call]


class _Merged(MultiProcessCollector):
    """The files of every worker merged; WORST gauges merged here (NaN wins, then the largest)."""

    def collect(self) -> Iterable[Metric]:
        for metric in super().collect():  # type: ignore[no-untyped-call]
            if metric.type == "gauge" and GAUGE_MODES.get(metric.name) == WORST:
                yield _worst(metric)
            else:
                yield metric


def _worst(metric: Metric) -> Metric:
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for s in metric.samples:
        labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))
        key = (s.name, labels)
        seen = merged.get(key)
        if seen is None or (not math.isnan(seen) and (math.isnan(s.value) or s.value > seen)):
            merged[key] = s.value
    metric.samples = [Sample(name, dict(labels), value) for (name, labels), value in merged.items()]
    return metric


def exposition(path: str) -> bytes:
    """Every worker's metrics, merged, in the Prometheus text format."""
    forget_dead(path)
    registry = CollectorRegistry()
    _Merged(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


class Mirror:
    """Copies what `collect` yields (families read from this worker's objects) into file-backed
    gauges (mode by GAUGE_MODES) and counters (by how much each grew since the last copy)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect
        self._gauges: dict[str, Gauge] = {}
        self._counters: dict[str, Counter] = {}
        self._copied: dict[tuple[str, tuple[str, ...]], float] = {}
        # the loop's copy and a scrape's (in a thread, app/observe/routes.py) one at a time:
        # two at once could both add the same increment to a counter
        self._lock = threading.Lock()

    def publish(self) -> None:
        """Copy the current figures (cheap: a few families, a few file writes)."""
        with self._lock:
            self._publish()

    def _publish(self) -> None:
        for family in self.collect():
            if not family.samples:  # e.g. the pool before the lifespan made it: nothing to copy
                continue
            names = tuple(family.samples[0].labels)
            if family.type == "gauge":
                gauge = self._gauges.get(family.name)
                if gauge is None:
                    mode = GAUGE_MODES.get(family.name, DEFAULT_MODE)
                    gauge = self._gauges[family.name] = Gauge(
                        family.name, family.documentation, names, registry=None,
                        multiprocess_mode="liveall" if mode == WORST else mode,  # type: ignore[arg-type]
                    )  # fmt: skip
                for s in family.samples:
                    (gauge.labels(*s.labels.values()) if names else gauge).set(s.value)
            elif family.type == "counter":
                counter = self._counters.get(family.name)
                if counter is None:
                    counter = self._counters[family.name] = Counter(
                        family.name, family.documentation, names, registry=None
                    )
                for s in family.samples:
                    if not s.name.endswith("_total"):
                        continue
                    key = (family.name, tuple(s.labels.values()))
                    grown = s.value - self._copied.get(key, 0.0)
                    self._copied[key] = s.value
                    if grown > 0:  # a count that went down (its object was replaced) restarts
                        (counter.labels(*s.labels.values()) if names else counter).inc(grown)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Copy every MIRROR_S while the app runs (started and stopped by its lifespan)."""

        async def loop() -> None:
            while True:
                try:
                    self.publish()
                except Exception:  # a figure that cannot be read must not stop the others
                    log.exception("could not copy the metrics read from this process")
                await asyncio.sleep(MIRROR_S)

        task = asyncio.create_task(loop(), name="metrics mirror")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def main() -> None:
    """`python -m app.observe.multiprocess`: create and empty the directory, print its path
    (the Docker entrypoint, before `uvicorn --workers N`)."""
    from app.config import get_settings

    print(prepare(directory(get_settings())))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
