"""Demo incidents: plausible, clearly labelled (source = 'demo'), reproducible from a seed."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import shapely
from shapely import wkb
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.incidents.models import Incident

DEMO_SOURCE = "demo"

# Category mixes by where incidents cluster, after the seed reports: drug routes on the Lao
# border, smuggling and counterfeit goods on the Chinese border, gambling, human trafficking
# and sand mining on the Cambodian border, fraud and theft in the cities.
MIX: dict[str, dict[str, float]] = {
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
    "city": {
        "fraud": 0.34,
        "robbery_theft": 0.3,
        "drug_trafficking": 0.14,
        "gambling": 0.1,
        "other": 0.12,
    },
}

CITIES: list[tuple[str, float, float]] = [
    ("Ha Noi", 105.854, 21.028),
    ("Ho Chi Minh City", 106.700, 10.776),
    ("Da Nang", 108.202, 16.054),
    ("Hai Phong", 106.688, 20.845),
    ("Can Tho", 105.746, 10.045),
]

STATUS_BY_AGE: list[tuple[str, float]] = [
    ("reported", 0.12),
    ("verified", 0.16),
    ("under_investigation", 0.2),
    ("solved", 0.38),
    ("closed", 0.08),
    ("rejected", 0.04),
    ("duplicate", 0.02),
]

Progress = Callable[[int, int], None]


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _offset(rng: random.Random, lon: float, lat: float, sigma_km: float) -> tuple[float, float]:
    """A point scattered around (lon, lat) with a Gaussian spread of sigma_km."""
    dx, dy = rng.gauss(0, sigma_km), rng.gauss(0, sigma_km)
    return lon + dx / (111.32 * math.cos(math.radians(lat))), lat + dy / 110.57


async def load(
    *,
    session: AsyncSession,
    count: int = 3000,
    seed: int = 7,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> int:
    """Insert `count` demo incidents (idempotent per seed); returns how many were new."""
    if count < 0 or count > 1_000_000:
        raise InvalidInput("demo count must be between 0 and 1 000 000")
    country = (
        await session.execute(
            text(
                "SELECT ST_AsBinary(geom) FROM jurisdiction"
                " WHERE level = 'country' AND code = 'VNM'"
            )
        )
    ).scalar()
    posts = (
        await session.execute(text("SELECT name, ST_X(geom), ST_Y(geom), border FROM border_post"))
    ).all()
    if country is None or not posts:
        raise InvalidInput("load the boundary data first (borderwatch geodata load)")
    vietnam = wkb.loads(bytes(country))
    shapely.prepare(vietnam)
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    i = 0
    while len(rows) < count:
        i += 1
        if rng.random() < 0.72:
            name, lon0, lat0, border = rng.choice(posts)
            mix, sigma = MIX.get(border or "", MIX["city"]), 7.0
        else:
            name, lon0, lat0 = rng.choice(CITIES)
            mix, sigma = MIX["city"], 9.0
        lon, lat = _offset(rng, lon0, lat0, sigma)
        if not vietnam.contains(shapely.Point(lon, lat)):
            continue
        age_days = rng.random() ** 1.3 * 540
        occurred = now - timedelta(days=age_days, minutes=rng.randrange(0, 1440))
        status = rng.choices([s for s, _ in STATUS_BY_AGE], weights=[w for _, w in STATUS_BY_AGE])[
            0
        ]
        if age_days < 14 and status in ("solved", "closed"):
            status = "under_investigation"
        category = _pick(rng, mix)
        rows.append(
            {
                "category": category,
                "severity": rng.choices([1, 2, 3, 4, 5], weights=[18, 30, 28, 16, 8])[0],
                "status": status,
                "occurred_at": occurred,
                "reported_at": occurred + timedelta(hours=rng.uniform(0.2, 48)),
                "geom": f"SRID=4326;POINT({lon:.6f} {lat:.6f})",
                "location_precision_m": rng.choice([10.0, 50.0, 100.0, 500.0, 1000.0]),
                "description": f"Demo incident: {category.replace('_', ' ')} near {name}",
                "unit": f"Demo unit {name}",
                "source": DEMO_SOURCE,
                "source_id": f"demo-{seed}-{len(rows)}",
                "created_by": "demo",
                "updated_by": "demo",
            }
        )
    written = 0
    batch = 1000
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
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
