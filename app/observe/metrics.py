"""This app's metrics, in a registry of its own (several apps in one process, as in the tests,
never share counts), exposed at /metrics in the Prometheus text format.

Counted as they happen: requests (route template, method, status) and their duration, tile
responses by layer (200 or 304; read off the tile routes' templates), statement timeouts
(app/errors.py), import rows (app/incidents/import_routes.py). Read when scraped: the database
pool, the live feed's subscribers (app/events/hub.py) and the rate limiters' refusals
(app/auth/deps.py), so their hot paths carry no metric code at all.

No label carries request data: routes are templates (`/incidents/{incident_id}`), methods a
fixed set, layers the tile routes' own names. See docs/observability.md.

Under `serve --workers N` (PROMETHEUS_MULTIPROC_DIR set) the counts go to files every worker
shares and a scrape merges them all; what is read when scraped is copied there by each worker
(app/observe/multiprocess.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app import replicas
from app.observe import multiprocess
from app.tiles import incidents as incident_tiles

if TYPE_CHECKING:
    from fastapi import FastAPI

# what a request-duration histogram needs to tell a 304 tile (well under 5 ms) from a slow
# analysis (seconds), and a request past the 30 s statement timeout from one just under it
DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# any other method (a client may send anything) is counted as OTHER: a label never takes a
# value a client chose
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
# the label of a request no route matched (404, or refused by a middleware before routing)
UNMATCHED = "(unmatched)"
TILE_PREFIX, TILE_SUFFIX = "/tiles/", "/{z}/{x}/{y}.mvt"

# no `…_created` series beside each counter and histogram (the process start time says as
# much): half the lines to scrape. Process-wide, as prometheus_client has it.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client


class ImportCounts(Protocol):
    """What an import's report says about its rows (app.incidents.imports.report)."""

    inserted: int
    updated: int
    unchanged: int
    skipped: int


def tile_layer(route: str) -> str | None:
    """The layer a tile route serves (`/tiles/incidents/{z}/{x}/{y}.mvt` → incidents); None for
    any other route. The unknown-layer route (`/tiles/{layer}/…`, a 404) is no layer."""
    if route.startswith(TILE_PREFIX) and route.endswith(TILE_SUFFIX):
        layer = route[len(TILE_PREFIX) : -len(TILE_SUFFIX)]
        if "/" not in layer and "{" not in layer:
            return layer
    return None


class Metrics:
    """The counters of one app and the collector that reads its pool, feed and limiters."""

    def __init__(self, app: FastAPI) -> None:
        # several processes: the metrics live in the shared directory's files
        self.shared_dir = os.environ.get(multiprocess.ENV) or None
        if self.shared_dir is not None:
            multiprocess.use_files()
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "borderwatch_http_requests", "HTTP requests answered, by route template, method"
            " and status", ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "borderwatch_http_request_duration_seconds", "Time from a request's arrival to the"
            " end of its response (a live feed: its whole stream), by route template and method",
            ["route", "method"], buckets=DURATION_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.tiles = Counter(
            "borderwatch_tile_responses", "Vector tile responses by layer and status (200 a"
            " tile, 304 the client's copy is current)", ["layer", "status"], registry=r,
        )  # fmt: skip
        self.statement_timeouts = Counter(
            "borderwatch_db_statement_timeouts", "Requests answered 503 because a statement"
            " ran past the database statement timeout", registry=r,
        )  # fmt: skip
        self.import_rows = Counter(
            "borderwatch_import_rows", "Rows of committed incident imports (API), by result",
            ["result"], registry=r,
        )  # fmt: skip
        state = _StateCollector(app)
        # one process: read when scraped; several: copied to the files (each worker's lifespan
        # runs the mirror, app/observe/__init__.py) and merged with the other workers'
        self.mirror = multiprocess.Mirror(state.collect) if self.shared_dir else None
        if self.mirror is None:
            r.register(state)
        # (route, method, status) -> the children that request updates: labels() once per
        # combination, not once per request
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._make_children(route, method, status)
        count, duration, tile = children
        count.inc()
        duration.observe(seconds)
        if tile is not None:
            tile.inc()

    def _make_children(self, route: str, method: str, status: int) -> tuple[Any, Any, Any]:
        method = method if method in METHODS else OTHER
        layer = tile_layer(route)
        tile = self.tiles.labels(layer, str(status)) if layer and status in (200, 304) else None
        return (
            self.requests.labels(route, method, str(status)),
            self.duration.labels(route, method),
            tile,
        )

    def statement_timeout(self) -> None:
        """Count one 503 caused by the statement timeout."""
        self.statement_timeouts.inc()

    def imported(self, report: ImportCounts) -> None:
        """Count the rows of one committed import."""
        for result in ("inserted", "updated", "unchanged", "skipped"):
            self.import_rows.labels(result).inc(getattr(report, result))

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (of every worker, with several)."""
        if self.mirror is not None and self.shared_dir is not None:
            self.mirror.publish()  # this worker's figures as of now; the others' within MIRROR_S
            return multiprocess.exposition(self.shared_dir)
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges and counters read from the app's objects when /metrics is scraped."""

    def __init__(self, app: FastAPI) -> None:
        self.state = app.state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The pool, the live feed's subscribers and the rate limiters' refusals."""
        connections = GaugeMetricFamily(
            "borderwatch_db_pool_connections",
            "Connections of the database pool: in use (checked out) or idle in the pool",
            labels=["state"],
        )
        waiting = GaugeMetricFamily(
            "borderwatch_db_pool_waiting",
            "Requests waiting for a connection because every one the pool may open is in use",
        )
        engine = getattr(self.state, "engine", None)
        pool = engine.pool if engine is not None else None
        if pool is not None and hasattr(pool, "checkedout"):
            connections.add_metric(["in_use"], pool.checkedout())
            connections.add_metric(["idle"], pool.checkedin())
            waiting.add_metric([], getattr(pool, "waiting", 0))
        yield connections
        yield waiting
        hub = getattr(self.state, "event_hub", None)
        yield GaugeMetricFamily(
            "borderwatch_live_feed_subscribers",
            "Open live-feed streams (GET /events) served by this process",
            value=hub.subscribers if hub is not None else 0,
        )
        refusals = CounterMetricFamily(
            "borderwatch_rate_limit_refusals",
            "Requests refused with 429 by a rate limit: requests (BORDERWATCH_RATE_LIMIT), tiles"
            " (BORDERWATCH_TILE_RATE_LIMIT), failed_auth (BORDERWATCH_AUTH_FAILURE_LIMIT)",
            labels=["limit"],
        )
        unchecked = CounterMetricFamily(
            "borderwatch_rate_limit_unchecked",
            "Requests let through without being counted by a rate limit: PostgreSQL, where the"
            " limits are counted for every process, could not be reached (fail open)",
            labels=["limit"],
        )
        failed_auth = getattr(self.state, "auth_failure_limiter", None)
        for name, limiter in (
            ("requests", getattr(self.state, "rate_limiter", None)),
            ("tiles", getattr(self.state, "tile_rate_limiter", None)),
            ("failed_auth", failed_auth.limit if failed_auth is not None else None),
        ):
            refused = getattr(limiter, "refusals", None) if limiter is not None else None
            if refused is not None:
                refusals.add_metric([name], refused)
            passed = getattr(limiter, "unchecked", None) if limiter is not None else None
            if passed is not None:
                unchecked.add_metric([name], passed)
        yield refusals
        kept = CounterMetricFamily(
            "borderwatch_incident_tile_cache",
            "Incident tiles (aggregates; points for readers) not kept for their version: made"
            " (by PostgreSQL), checked (an older kept tile tested against the change log),"
            " reused (that tile proven unchanged and sent), recounted (an aggregate tile made from"
            " that tile by counting again the cells the changes touched); docs/tiles.md",
            labels=["outcome"],
        )
        for outcome, count in incident_tiles.REUSE.items():
            kept.add_metric([outcome], count)
        yield kept
        yield from replicas.metrics(self.state)  # read replicas' lag and use (app/replicas.py)
        yield unchecked
