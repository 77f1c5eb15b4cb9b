"""The degree bounds of app/geo/spatial.py against pyproj's geodesic."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.geo import spatial
from geo_reference import GEOD


def circle(lon: float, lat: float, metres: float, n: int = 720) -> tuple[np.ndarray, np.ndarray]:
    """Points exactly `metres` from (lon, lat) on the spheroid, every half degree of azimuth."""
    azimuths = np.linspace(0, 360, n, endpoint=False)
    lons, lats, _ = GEOD.fwd(
        np.full(n, lon), np.full(n, lat), azimuths, np.full(n, metres), radians=False
    )
    return np.asarray(lons), np.asarray(lats)


@pytest.mark.parametrize(
    ("lon", "lat", "metres"),
    [(105.85, 21.03, 5_000), (104.0, 8.6, 100_000), (120.0, -45.0, 250_000), (10.0, 70.0, 1e6)],
)
def test_box_around_holds_the_geodesic_circle(lon: float, lat: float, metres: float) -> None:
    box = spatial.box_around((lon, lat, lon, lat), metres)
    assert box is not None
    west, south, east, north = box
    lons, lats = circle(lon, lat, metres)
    assert (lons > west).all() and (lons < east).all()
    assert (lats > south).all() and (lats < north).all()
    if metres <= 100_000:  # generous by little more than the margin: a useful prefilter
        assert east - lon < (lons.max() - lon) * 1.05 and north - lat < (lats.max() - lat) * 1.05


def test_box_around_gives_up_near_the_poles() -> None:
    assert spatial.box_around((0.0, 89.5, 0.0, 89.5), 50_000) is None
    assert spatial.box_around((0.0, 0.0, 0.0, 0.0), 30_000_000) is None


@pytest.mark.parametrize("lat", [0.0, 21.0, 45.0, 60.0, 80.0])
def test_inner_degrees_is_surely_within(lat: float) -> None:
    """A point inner_degrees away in any direction is within the distance on the ground."""
    metres = 10_000.0
    deg = spatial.inner_degrees(metres)
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    lons, lats = 105 + deg * np.cos(angles), lat + deg * np.sin(angles)
    _, _, dist = GEOD.inv(np.full(360, 105.0), np.full(360, lat), lons, lats)
    assert (np.asarray(dist) <= metres).all()


def test_tolerance_degrees_is_metres_at_the_equator() -> None:
    assert spatial.tolerance_degrees(spatial.M_PER_DEG_LON_EQUATOR) == 1.0


async def test_outer_degrees_sql_matches_its_expression_form(session: AsyncSession) -> None:
    """The text form for hand-written statements gives the same number as the expression."""
    line = "ST_GeomFromText('LINESTRING(105 21, 106 52)', 4326)"
    as_text = await session.execute(text(f"SELECT {spatial.outer_degrees_sql(line, '5000')}"))
    as_expr = await session.execute(select(spatial.outer_degrees(text(line), 5000.0)))
    assert as_text.scalar_one() == pytest.approx(as_expr.scalar_one(), rel=1e-12)
