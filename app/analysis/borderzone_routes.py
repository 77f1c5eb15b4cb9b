"""GET /analysis/border-zone and GET /analysis/border-posts (aggregates only)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.analysis import borderzone
from app.analysis.cache import VersionedCache
from app.auth.deps import Viewer
from app.db import SessionDep
from app.geo.geojson import DOC, GeoJSONResponse
from app.geo.params import SimplifyM
from app.incidents.filters import FilterDep, IncidentFilter
from app.tiles import versions

router = APIRouter(tags=["analysis"])


@router.get(
    "/analysis/border-zone",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Incidents per distance band from the national border, with the band polygons",
)
async def border_zone(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    segment: Annotated[
        str,
        Query(
            max_length=32,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="border segment code (VNM-LAO, VNM-CHN, VNM-KHM) or `all`",
        ),
    ] = borderzone.ALL,
    bands: Annotated[
        str,
        Query(
            max_length=200,
            description="band edges in km: 2-10 ascending values from 0, at most 200",
        ),
    ] = "0,5,20,50",
    simplify: SimplifyM = None,
) -> GeoJSONResponse:
    """One Feature per (segment, band): `from_km` <= distance < `to_km`, `count`, `share`.
    Kept per version of the incidents, boundaries and borders (and the scope, the filter and
    these parameters) in each process: the band polygons cost seconds every time."""
    edges = borderzone.parse_bands(bands)
    home = request.app.state.settings.home_country
    found = await versions.read(session=session)
    key = zone_key(found, filt, segment, edges, home, simplify)

    async def make() -> bytes:
        return await borderzone.border_zone(
            session=session, filt=filt, segment=segment, bands=edges, home=home,
            simplify_m=simplify,
        )  # fmt: skip

    return GeoJSONResponse(await zone_cache(request.app.state).get(key, make))


ZONE_DEPENDS = ("incidents", "jurisdictions", "borders")
ZONES_KEPT = 16


def zone_key(
    found: versions.Versions,
    filt: IncidentFilter,
    segment: str,
    bands: tuple[float, ...],
    home: str,
    simplify: float | None,
) -> tuple[Hashable, ...]:
    """Everything a border-zone body depends on."""
    view = versions.incident_view(filt, aggregate_only=False, home=home)
    tag = versions.token(ZONE_DEPENDS, found, view)
    return ("border-zone", tag, filt, segment, bands, simplify)


def zone_cache(state: Any) -> VersionedCache[bytes]:
    """The application's kept border-zone bodies, made on first use."""
    cache: VersionedCache[bytes] | None = getattr(state, "border_zone_cache", None)
    if cache is None:
        cache = state.border_zone_cache = VersionedCache(ZONES_KEPT)
    return cache


@router.get(
    "/analysis/border-posts",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Border posts with the incidents in their area of responsibility, by category",
)
async def border_posts(
    request: Request,
    session: SessionDep,
    _: Viewer,
    filt: FilterDep,
    zone_km: Annotated[
        float,
        Query(ge=0, le=borderzone.MAX_KM, description="depth of the border zone, km"),
    ] = 50,
) -> GeoJSONResponse:
    """A post's area: incidents whose nearest post it is, on the home side within zone_km."""
    body = await borderzone.border_posts(
        session=session, filt=filt, zone_km=zone_km, home=request.app.state.settings.home_country
    )
    return GeoJSONResponse(body)
