"""Demo incidents: plausible, clearly labelled (source = 'demo'), reproducible from a seed.

Incidents gather where the seed reports put them: around the international border gates, along
known trafficking routes, along the border zone, around the big cities, and — for illegal sand
mining — along the Mekong (Tiền and Hậu), Saigon and Đồng Nai rivers. Category mixes differ by
border (drugs on the Lao border, smuggling and counterfeit goods at the Chinese gates, gambling
and human trafficking on the Cambodian border) and follow a seasonal rhythm (smuggling before
Tết, sand mining in the dry season). Generation is vectorised, so --count 1000000 is practical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from shapely import wkb
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as audit
from app.errors import InvalidInput
from app.geo import spatial
from app.incidents.models import STATUSES as INCIDENT_STATUSES
from app.incidents.models import Incident

DEMO_SOURCE = "demo"
YEARS = 3
Mix = dict[str, float]

BORDER_MIX: dict[str, Mix] = {
    "VNM-CHN": {
        "smuggling": 0.32,
        "counterfeit_goods": 0.2,
        "illegal_border_crossing": 0.16,
        "human_trafficking": 0.1,
        "drug_trafficking": 0.12,
        "weapons": 0.03,
        "other": 0.07,
    },
    "VNM-LAO": {
        "drug_trafficking": 0.5,
        "weapons": 0.08,
        "illegal_border_crossing": 0.14,
        "smuggling": 0.12,
        "human_trafficking": 0.08,
        "environmental_crime": 0.05,
        "other": 0.03,
    },
    "VNM-KHM": {
        "smuggling": 0.24,
        "gambling": 0.18,
        "human_trafficking": 0.14,
        "drug_trafficking": 0.16,
        "illegal_border_crossing": 0.1,
        "fraud": 0.1,
        "environmental_crime": 0.08,
    },
}
CITY_MIX: Mix = {
    "fraud": 0.34,
    "robbery_theft": 0.3,
    "drug_trafficking": 0.14,
    "gambling": 0.1,
    "other": 0.12,
}
DRUG_ROUTE: Mix = {
    "drug_trafficking": 0.62,
    "weapons": 0.1,
    "human_trafficking": 0.1,
    "illegal_border_crossing": 0.08,
    "other": 0.1,
}
SMUGGLING_ROUTE: Mix = {
    "smuggling": 0.5,
    "counterfeit_goods": 0.3,
    "drug_trafficking": 0.1,
    "other": 0.1,
}
SOUTH_ROUTE: Mix = {
    "smuggling": 0.4,
    "gambling": 0.2,
    "human_trafficking": 0.2,
    "drug_trafficking": 0.2,
}
# the border segments as the demo's descriptions name them
BORDER_NAMES = {
    "VNM-CHN": "Việt - Trung",
    "VNM-LAO": "Việt - Lào",
    "VNM-KHM": "Việt Nam - Campuchia",
}
SAND: Mix = {"environmental_crime": 0.82, "smuggling": 0.1, "other": 0.08}

CITIES: list[tuple[str, float, float]] = [
    ("Hà Nội", 105.854, 21.028),
    ("Thành phố Hồ Chí Minh", 106.700, 10.776),
    ("Đà Nẵng", 108.202, 16.054),
    ("Hải Phòng", 106.688, 20.845),
    ("Cần Thơ", 105.746, 10.045),
]

# Known routes (approximate polylines, lon/lat) and the category mix along them.
ROUTES: list[tuple[str, Mix, list[tuple[float, float]]]] = [
    ("Tây Trang - Điện Biên Phủ - Sơn La - Hòa Bình", DRUG_ROUTE,
     [(102.88, 21.20), (103.02, 21.39), (103.42, 21.59), (103.91, 21.33), (104.63, 20.85),
      (105.34, 20.82)]),
    ("Nậm Cắn - Mường Xén - Tương Dương - Con Cuông", DRUG_ROUTE,
     [(103.98, 19.42), (104.13, 19.40), (104.44, 19.28), (104.88, 19.05)]),
    ("Quốc lộ 9: Lao Bảo - Khe Sanh - Đông Hà", DRUG_ROUTE,
     [(106.596, 16.622), (106.73, 16.63), (107.10, 16.81)]),
    ("Quốc lộ 18: Móng Cái - Hạ Long", SMUGGLING_ROUTE,
     [(107.95, 21.52), (107.60, 21.35), (107.33, 21.25), (107.08, 20.95)]),
    ("Quốc lộ 1A: Hữu Nghị - Lạng Sơn - Hà Nội", SMUGGLING_ROUTE,
     [(106.705, 21.969), (106.76, 21.85), (106.46, 21.50), (106.20, 21.28), (105.86, 21.05)]),
    ("Quốc lộ 22: Mộc Bài - Thành phố Hồ Chí Minh", SOUTH_ROUTE,
     [(106.18, 11.08), (106.30, 11.02), (106.47, 10.95), (106.62, 10.85)]),
    ("Tịnh Biên - Châu Đốc - Long Xuyên", SOUTH_ROUTE,
     [(104.94, 10.61), (105.11, 10.70), (105.43, 10.38)]),
]  # fmt: skip
RIVERS: list[tuple[str, list[tuple[float, float]]]] = [
    ("sông Tiền", [(105.16, 10.90), (105.25, 10.80), (105.45, 10.62), (105.63, 10.45),
                    (105.80, 10.33), (106.00, 10.33), (106.36, 10.35)]),
    ("sông Hậu", [(105.10, 10.72), (105.30, 10.55), (105.45, 10.37), (105.62, 10.20),
                   (105.78, 10.05), (105.95, 9.85)]),
    ("sông Sài Gòn", [(106.37, 11.30), (106.55, 11.10), (106.65, 10.98), (106.70, 10.85),
                      (106.72, 10.78)]),
    ("sông Đồng Nai", [(107.05, 11.13), (106.90, 11.00), (106.82, 10.95), (106.78, 10.88),
                        (106.80, 10.75)]),
]  # fmt: skip

# Month factors (January = index 0) by category; others are flat.
SEASON: dict[str, list[float]] = {
    "smuggling": [1.6, 1.3, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 1.0, 1.3, 1.7],
    "counterfeit_goods": [1.5, 1.2, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 1.0, 1.3, 1.6],
    "environmental_crime": [1.5, 1.6, 1.6, 1.5, 1.2, 0.8, 0.6, 0.5, 0.5, 0.6, 0.9, 1.2],
    "gambling": [1.8, 1.6, 0.9, 0.9, 0.9, 1.1, 1.1, 0.9, 0.8, 0.8, 0.9, 1.2],
    "drug_trafficking": [1.2, 1.2, 1.1, 1.1, 1.0, 0.9, 0.8, 0.8, 0.9, 1.0, 1.1, 1.2],
}
STATUSES = list(INCIDENT_STATUSES)
STATUS_P = {  # by age: under 30 days, under 180 days, older
    0: [0.35, 0.3, 0.28, 0.02, 0.0, 0.03, 0.02],
    1: [0.08, 0.14, 0.3, 0.36, 0.05, 0.04, 0.03],
    2: [0.02, 0.05, 0.15, 0.5, 0.2, 0.05, 0.03],
}
SEVERITY_P = [0.18, 0.3, 0.28, 0.16, 0.08]
PRECISION_M = [10.0, 50.0, 100.0, 500.0, 1000.0]

Progress = Callable[[int, int], None]
Post = tuple[str, float, float, str | None]


@dataclass(frozen=True)
class Source:
    """One place incidents come from: points around it and a category mix."""

    name: str
    mix: Mix
    kind: str  # point | line
    coords: np.ndarray  # (n, 2) lon/lat
    spread_km: float


def _scatter(
    rng: np.random.Generator, lon: np.ndarray, lat: np.ndarray, sigma_km: float
) -> tuple[np.ndarray, np.ndarray]:
    dx = rng.normal(0, sigma_km, lon.size)
    dy = rng.normal(0, sigma_km, lon.size)
    km_per_deg_lon = spatial.M_PER_DEG_LON_EQUATOR / 1000 * np.cos(np.radians(lat))
    return lon + dx / km_per_deg_lon, lat + dy / (spatial.M_PER_DEG_LAT_MIN / 1000)


def _along(rng: np.random.Generator, coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points uniformly along a polyline (by length in degrees, fine at these scales)."""
    seg = np.diff(coords, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    which = rng.choice(len(lengths), size=n, p=lengths / lengths.sum())
    t = rng.random(n)
    pts = coords[which] + seg[which] * t[:, None]
    return pts[:, 0], pts[:, 1]


def _sources(
    posts: list[tuple[str, float, float, str | None]], borders: dict[str, np.ndarray]
) -> list[tuple[Source, float]]:
    out: list[tuple[Source, float]] = []
    for name, lon, lat, border in posts:
        mix = BORDER_MIX.get(border or "", CITY_MIX)
        out.append((Source(name, mix, "point", np.array([[lon, lat]]), 6.0), 0.40 / len(posts)))
    for name, mix, line in ROUTES:
        out.append((Source(name, mix, "line", np.array(line), 2.5), 0.22 / len(ROUTES)))
    for name, line in RIVERS:
        out.append((Source(name, SAND, "line", np.array(line), 0.8), 0.08 / len(RIVERS)))
    for name, lon, lat in CITIES:
        out.append(
            (Source(name, CITY_MIX, "point", np.array([[lon, lat]]), 8.0), 0.18 / len(CITIES))
        )
    for code, vertices in borders.items():
        mix = BORDER_MIX.get(code, CITY_MIX)
        name = f"khu vực biên giới {BORDER_NAMES.get(code, code)}"
        out.append((Source(name, mix, "line", vertices, 9.0), 0.12 / len(borders)))
    return out


def generate(
    *,
    count: int,
    seed: int,
    vietnam: Any,
    neighbours: Any,
    posts: list[Post],
    borders: dict[str, np.ndarray],
    now: datetime,
) -> list[dict[str, Any]]:
    """`count` demo incident rows; the same inputs and seed give the same rows."""
    rng = np.random.default_rng(seed)
    sources = _sources(posts, borders)
    weights = np.array([w for _, w in sources])
    weights /= weights.sum()
    span_s = YEARS * 365 * 86400
    inland = vietnam
    shapely.prepare(inland)
    near_water = shapely.buffer(vietnam, 0.02)
    shapely.prepare(near_water)
    shapely.prepare(neighbours)
    rows: list[dict[str, Any]] = []
    while len(rows) < count:
        batch = max(1024, int((count - len(rows)) * 1.5))
        pick = rng.choice(len(sources), size=batch, p=weights)
        lon = np.empty(batch)
        lat = np.empty(batch)
        for s_index in np.unique(pick):
            src = sources[s_index][0]
            idx = np.nonzero(pick == s_index)[0]
            if src.kind == "point":
                base_lon = np.full(idx.size, src.coords[0, 0])
                base_lat = np.full(idx.size, src.coords[0, 1])
            else:
                base_lon, base_lat = _along(rng, src.coords, idx.size)
            lon[idx], lat[idx] = _scatter(rng, base_lon, base_lat, src.spread_km)
        inside = shapely.contains_xy(inland, lon, lat)
        # sand mining happens on the water: keep river points in the channels the boundary data
        # leaves out (they get the nearest province), but never in a neighbouring country
        river = np.array([sources[i][0].mix is SAND for i in range(len(sources))])[pick]
        wet = (
            river
            & shapely.contains_xy(near_water, lon, lat)
            & ~shapely.contains_xy(neighbours, lon, lat)
        )
        keep = inside | wet
        age_s = rng.random(batch) * span_s
        stamps = np.datetime64(now.replace(tzinfo=None), "s") - age_s.astype("timedelta64[s]")
        months = stamps.astype("datetime64[M]").astype(int) % 12
        categories = np.empty(batch, dtype=object)
        for s_index in np.unique(pick):
            mix = sources[s_index][0].mix
            idx = np.nonzero(pick == s_index)[0]
            p = np.array(list(mix.values()))
            categories[idx] = rng.choice(list(mix), size=idx.size, p=p / p.sum())
        season = np.ones(batch)
        for cat, factors in SEASON.items():
            mask = categories == cat
            season[mask] = np.array(factors)[months[mask]]
        keep &= rng.random(batch) < season / 1.8
        severity = rng.choice(5, size=batch, p=SEVERITY_P) + 1
        precision = rng.choice(PRECISION_M, size=batch)
        delay_h = rng.uniform(0.2, 48, batch)
        status_u = rng.random(batch)
        for i in np.nonzero(keep)[0]:
            if len(rows) == count:
                break
            age_days = age_s[i] / 86400
            bucket = 0 if age_days < 30 else 1 if age_days < 180 else 2
            status = STATUSES[
                int(
                    np.searchsorted(
                        np.cumsum(STATUS_P[bucket]), status_u[i] * sum(STATUS_P[bucket])
                    )
                )
            ]
            src = sources[pick[i]][0]
            cat = str(categories[i])
            occurred = now - timedelta(seconds=float(age_s[i]))
            rows.append(
                {
                    "category": cat,
                    "severity": int(severity[i]),
                    "status": status,
                    "occurred_at": occurred,
                    "reported_at": min(occurred + timedelta(hours=float(delay_h[i])), now),
                    "lon": round(float(lon[i]), 6),
                    "lat": round(float(lat[i]), 6),
                    "location_precision_m": float(precision[i]),
                    "description": f"Demo incident: {cat.replace('_', ' ')} near {src.name}",
                    "unit": f"Demo unit {src.name}",
                    "source": DEMO_SOURCE,
                    "source_id": f"demo-{seed}-{len(rows)}",
                }
            )
    return rows


async def _inputs(
    session: AsyncSession,
) -> tuple[Any, Any, list[tuple[str, float, float, str | None]], dict[str, np.ndarray]]:
    country = (
        await session.execute(
            text(
                "SELECT ST_AsBinary(geom) FROM jurisdiction"
                " WHERE level = 'country' AND code = 'VNM'"
            )
        )
    ).scalar()
    others = (
        await session.execute(
            text(
                "SELECT ST_AsBinary(ST_Union(geom)) FROM jurisdiction"
                " WHERE level = 'country' AND code <> 'VNM'"
            )
        )
    ).scalar()
    posts = [
        (str(r[0]), float(r[1]), float(r[2]), r[3])
        for r in (
            await session.execute(
                text(
                    "SELECT coalesce(name_local, name), ST_X(geom), ST_Y(geom), border"
                    " FROM border_post ORDER BY code"
                )
            )
        ).all()
    ]
    borders = {
        str(code): np.array(shapely.get_coordinates(wkb.loads(bytes(geom))))
        for code, geom in (
            await session.execute(
                text(
                    "SELECT code, ST_AsBinary(ST_LineMerge(geom)) FROM border_segment ORDER BY code"
                )
            )
        ).all()
    }
    if country is None or not posts or not borders:
        raise InvalidInput("load the boundary data first (borderwatch geodata load)")
    neighbours = wkb.loads(bytes(others)) if others is not None else shapely.Polygon()
    return wkb.loads(bytes(country)), neighbours, posts, borders


async def load(
    *,
    session: AsyncSession,
    count: int = 3000,
    seed: int = 7,
    now: datetime | None = None,
    actor: str = audit.SYSTEM_ACTOR,
    progress: Progress | None = None,
) -> int:
    """Insert `count` demo incidents (idempotent per seed), record the load in the audit log
    as `actor`'s, and return how many were new."""
    if count < 0 or count > 1_000_000:
        raise InvalidInput("demo count must be between 0 and 1 000 000")
    vietnam, neighbours, posts, borders = await _inputs(session)
    rows = generate(
        count=count,
        seed=seed,
        vietnam=vietnam,
        neighbours=neighbours,
        posts=posts,
        borders=borders,
        now=(now or datetime.now(UTC)).replace(microsecond=0),
    )
    written = await write(session=session, rows=rows, progress=progress)
    await audit.record(
        session=session, actor=actor, action="demo_load", entity_type="incident",
        entity_id=None, after={"count": count, "seed": seed, "written": written},
    )  # fmt: skip
    return written


async def write(
    *, session: AsyncSession, rows: list[dict[str, Any]], progress: Progress | None = None
) -> int:
    """Insert generated rows, skipping (source, source_id) pairs already stored."""
    await session.execute(
        text(
            "SELECT set_config('borderwatch.actor', 'demo', true),"
            " set_config('borderwatch.action', 'import', true)"
        )
    )
    written = 0
    batch = 2000
    for start in range(0, len(rows), batch):
        chunk = [
            {k: v for k, v in r.items() if k not in ("lon", "lat")}
            | {
                "geom": f"SRID={spatial.SRID_WGS84};POINT({r['lon']} {r['lat']})",
                "created_by": "demo",
                "updated_by": "demo",
            }
            for r in rows[start : start + batch]
        ]
        stmt = (
            insert(Incident)
            .values(chunk)
            .on_conflict_do_nothing(
                index_elements=[Incident.source, Incident.source_id],
                index_where=Incident.source_id.isnot(None),
            )
            .returning(Incident.id)
        )
        written += len((await session.execute(stmt)).all())
        if progress:
            progress(min(start + batch, len(rows)), len(rows))
    return written


async def count_incidents(*, session: AsyncSession) -> int:
    """How many incidents are stored (demo or not)."""
    return int((await session.execute(select(func.count()).select_from(Incident))).scalar_one())
