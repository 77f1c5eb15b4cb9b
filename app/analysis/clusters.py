"""DBSCAN clusters of incidents (ST_ClusterDBSCAN in a metric projection), aggregates only."""

from __future__ import annotations

import math

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.geo import geojson
from app.geo.spatial import SRID_UTM48N, SRID_WGS84
from app.incidents.filters import IncidentFilter
from app.incidents.models import Incident

MIN_EPS_M, MAX_EPS_M = 10.0, 50_000.0
MIN_POINTS, MAX_POINTS = 2, 1000


def check_dbscan(eps_m: float, min_points: int) -> None:
    """eps_m within [10 m, 50 km] and min_points within [2, 1000] (InvalidInput otherwise)."""
    if not (math.isfinite(eps_m) and MIN_EPS_M <= eps_m <= MAX_EPS_M):
        raise InvalidInput(
            f"eps_m must be between {MIN_EPS_M:g} and {MAX_EPS_M:g} m; got {eps_m:g}",
            field="eps_m",
        )
    if not MIN_POINTS <= min_points <= MAX_POINTS:
        raise InvalidInput(
            f"min_points must be between {MIN_POINTS} and {MAX_POINTS}; got {min_points}",
            field="min_points",
        )


async def clusters(
    *, session: AsyncSession, filt: IncidentFilter, eps_m: float, min_points: int
) -> bytes:
    """DBSCAN clusters of the matching incidents (ST_ClusterDBSCAN in EPSG:32648, so eps is
    in metres): one Feature per cluster — its convex hull widened by eps/2 — with count,
    categories and the hull's own area, busiest first. No incident ids or positions:
    aggregates only."""
    check_dbscan(eps_m, min_points)
    i = Incident
    dbscan = func.ST_ClusterDBSCAN(func.ST_Transform(i.geom, SRID_UTM48N), eps_m, min_points)
    # a CTE referenced three times: PostgreSQL runs the clustering once
    labelled = (
        select(i.geom, i.category, dbscan.over().label("cid")).where(*filt.conditions()).cte()
    )
    lab = labelled.c
    per_category = (
        select(lab.cid, lab.category, func.count().label("n"))
        .where(lab.cid.is_not(None))
        .group_by(lab.cid, lab.category)
        .subquery()
    )
    pc = per_category.c
    by_category = (
        select(
            pc.cid,
            func.json_object_agg(pc.category, pc.n).label("cats"),
        )
        .group_by(pc.cid)
        .subquery()
    )
    hull = func.ST_ConvexHull(func.ST_Collect(lab.geom))
    per_cluster = (
        select(lab.cid, func.count().label("n"), hull.label("hull"))
        .where(lab.cid.is_not(None))
        .group_by(lab.cid)
        .subquery()
    )
    c = per_cluster.c
    rank = func.row_number().over(
        order_by=(c.n.desc(), func.ST_XMin(c.hull), func.ST_YMin(c.hull), c.cid)
    )
    area_km2 = func.ST_Area(func.ST_Transform(c.hull, SRID_UTM48N)) / 1e6
    # the hull widened by eps/2: its corners would otherwise be exact incident positions, and
    # viewers (aggregates only) may call this; it also reads better on a map than a sliver
    shown = func.ST_Transform(
        func.ST_Buffer(func.ST_Transform(c.hull, SRID_UTM48N), eps_m / 2, "quad_segs=8"), SRID_WGS84
    )
    feature = geojson.feature(
        id_=rank,
        geom=shown,
        properties={
            "count": c.n,
            "by_category": by_category.c.cats,
            "hull_area_km2": geojson.rounded(area_km2, 4),
        },
    )
    features = select(feature.label("f"), rank.label("ord")).join(
        by_category, by_category.c.cid == c.cid
    )
    body = await geojson.collection(session, features)
    total, clustered, n_clusters = (
        await session.execute(
            select(
                func.count(),
                func.count(lab.cid),
                func.count(func.distinct(lab.cid)),
            ).select_from(labelled)
        )
    ).one()
    head = {
        "type": "FeatureCollection",
        "eps_m": eps_m,
        "min_points": min_points,
        "clusters": int(n_clusters),
        "incidents": int(total),
        "clustered": int(clustered),
        "noise": int(total) - int(clustered),
        "scope": filt.scope.name,
        "crs_metric": f"EPSG:{SRID_UTM48N}",
    }
    rest = body.removeprefix(b'{"type":"FeatureCollection",')
    return orjson.dumps(head)[:-1] + b"," + rest
