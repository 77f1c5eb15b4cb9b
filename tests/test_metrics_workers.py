"""How /metrics merges what each worker reads from its own objects (app/observe/multiprocess.py)
when several processes serve: every gauge as docs/observability.md says (pool, live feed:
sum; replica up: the lowest; replica lag: NaN when any worker's check failed, else the
largest), a worker marked dead leaves none of its gauges and all of its counts, and the
directory `serve` prepares.

Two workers here are two process ids (this one and its parent, both alive) under which the
figures are written, as prometheus_client writes them from two processes: the same files and
the same merge as `serve --workers 2` (tests/test_workers.py runs that for real)."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from app.observe import multiprocess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ME, PARENT = os.getpid(), os.getppid()
R1, R2, R3 = "replica1:5432/bw", "replica2:5432/bw", "replica3:5432/bw"


class Worker:
    """What one worker's objects say (as app.observe.metrics._StateCollector reads them)."""

    def __init__(self, in_use: int, idle: int, subscribers: int, refusals: int) -> None:
        self.in_use, self.idle, self.subscribers, self.refusals = (
            in_use,
            idle,
            subscribers,
            refusals,
        )
        self.lag: dict[str, float] = {}
        self.up: dict[str, float] = {}

    def collect(self) -> Iterator[Metric]:
        pool = GaugeMetricFamily("borderwatch_db_pool_connections", "pool", labels=["state"])
        pool.add_metric(["in_use"], self.in_use)
        pool.add_metric(["idle"], self.idle)
        yield pool
        yield GaugeMetricFamily("borderwatch_live_feed_subscribers", "feed", self.subscribers)
        refused = CounterMetricFamily("borderwatch_rate_limit_refusals", "429", labels=["limit"])
        refused.add_metric(["requests"], self.refusals)
        yield refused
        lag = GaugeMetricFamily("borderwatch_db_replica_lag_seconds", "lag", labels=["replica"])
        up = GaugeMetricFamily("borderwatch_db_replica_up", "up", labels=["replica"])
        for name, seconds in self.lag.items():
            lag.add_metric([name], seconds)
            up.add_metric([name], self.up[name])
        yield lag
        yield up


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[int]]]:
    """The directory, and prometheus_client writing under whichever pid the list's first
    item says (each write checks it, as after a fork)."""
    directory = multiprocess.prepare(tmp_path / "metrics")
    monkeypatch.setenv(multiprocess.ENV, str(directory))
    pid = [ME]
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: pid[0]))  # type: ignore[no-untyped-call]
    yield directory, pid


def _scrape(directory: Path) -> Samples:
    text = multiprocess.exposition(str(directory)).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _publish(pid: list[int], workers: dict[int, tuple[Worker, multiprocess.Mirror]]) -> None:
    for worker_pid, (_, mirror) in workers.items():
        pid[0] = worker_pid
        mirror.publish()


def test_gauges_merge_as_documented_and_a_dead_worker_leaves_its_counts(
    shared: tuple[Path, list[int]],
) -> None:
    directory, pid = shared
    a, b = Worker(2, 1, 3, 5), Worker(1, 4, 4, 7)
    # R1: both checked it, b sees it further behind and skips it; R2, R3: one worker's check
    # failed (NaN), in either order of the files
    a.lag, a.up = {R1: 0.5, R2: math.nan, R3: 1.0}, {R1: 1, R2: 0, R3: 1}
    b.lag, b.up = {R1: 2.0, R2: 1.0, R3: math.nan}, {R1: 0, R2: 1, R3: 0}
    workers = {ME: (a, multiprocess.Mirror(a.collect)), PARENT: (b, multiprocess.Mirror(b.collect))}
    _publish(pid, workers)
    s = _scrape(directory)

    def one(name: str, **labels: str) -> float:
        return s[(name, frozenset(labels.items()))]

    assert one("borderwatch_db_pool_connections", state="in_use") == 2 + 1
    assert one("borderwatch_db_pool_connections", state="idle") == 1 + 4
    assert one("borderwatch_live_feed_subscribers") == 3 + 4
    assert one("borderwatch_rate_limit_refusals_total", limit="requests") == 5 + 7
    assert one("borderwatch_db_replica_lag_seconds", replica=R1) == 2.0
    assert math.isnan(one("borderwatch_db_replica_lag_seconds", replica=R2))
    assert math.isnan(one("borderwatch_db_replica_lag_seconds", replica=R3))
    assert [one("borderwatch_db_replica_up", replica=r) for r in (R1, R2, R3)] == [0, 0, 0]
    assert not any(k == "pid" for _, labels in s for k, _ in labels)  # merged, not per worker

    # figures move: gauges are replaced, counters grow by what each worker's count grew
    a.subscribers, a.refusals, b.refusals = 1, 9, 7
    a.lag[R2], a.up[R2] = 0.25, 1
    _publish(pid, workers)
    s = _scrape(directory)
    assert one("borderwatch_live_feed_subscribers") == 1 + 4
    assert one("borderwatch_rate_limit_refusals_total", limit="requests") == 9 + 7
    assert one("borderwatch_db_replica_lag_seconds", replica=R2) == 1.0
    assert one("borderwatch_db_replica_up", replica=R2) == 1

    # b exits (its supervisor marks it dead): its gauges go, its refusals stay counted
    mark_process_dead(PARENT, str(directory))  # type: ignore[no-untyped-call]
    assert not list(directory.glob(f"gauge_live*_{PARENT}.db"))
    s = _scrape(directory)
    assert one("borderwatch_db_pool_connections", state="idle") == 1
    assert one("borderwatch_live_feed_subscribers") == 1
    assert one("borderwatch_db_replica_lag_seconds", replica=R1) == 0.5
    assert one("borderwatch_db_replica_lag_seconds", replica=R3) == 1.0
    assert one("borderwatch_db_replica_up", replica=R1) == 1
    assert one("borderwatch_rate_limit_refusals_total", limit="requests") == 9 + 7


def test_a_gone_workers_live_gauges_are_dropped_at_the_scrape(
    shared: tuple[Path, list[int]],
) -> None:
    """A worker whose supervisor did not mark it dead (plain `uvicorn --workers`): the scrape
    finds its process gone and drops its live gauges itself."""
    directory, pid = shared
    gone = _gone_pid()
    a, b = Worker(1, 2, 1, 0), Worker(3, 3, 2, 0)
    workers = {ME: (a, multiprocess.Mirror(a.collect)), gone: (b, multiprocess.Mirror(b.collect))}
    _publish(pid, workers)
    assert list(directory.glob(f"gauge_livesum_{gone}.db"))
    s = _scrape(directory)
    assert s[("borderwatch_live_feed_subscribers", frozenset())] == 1
    assert s[("borderwatch_db_pool_connections", frozenset({("state", "in_use")}))] == 1
    assert not list(directory.glob(f"gauge_live*_{gone}.db"))


def _gone_pid() -> int:
    """A process id no process has now (a child that has exited and been reaped)."""
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    return child


def test_serve_prepares_a_private_empty_directory(tmp_path: Path) -> None:
    """Created 0700; an existing one (left open to all, with an earlier run's files) made
    0700 and emptied; a symbolic link or a file in its place refused."""
    made = multiprocess.prepare(tmp_path / "data" / "metrics")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    made.chmod(0o777)
    (made / "counter_12.db").write_bytes(b"earlier")
    (made / "gauge_livesum_12.db").write_bytes(b"earlier")
    again = multiprocess.prepare(made)
    assert again == made and list(made.iterdir()) == []
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(RuntimeError, match="not a directory"):
        multiprocess.prepare(link)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RuntimeError, match="not a directory"):
        multiprocess.prepare(tmp_path / "file")
