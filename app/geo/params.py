"""Query parameters shared by the GeoJSON endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

SimplifyM = Annotated[
    float | None,
    Query(
        ge=0,
        le=50_000,
        description="simplify geometries for map display; tolerance in metres (0 = full detail)",
    ),
]
CountryCode = Annotated[
    str | None,
    Query(
        pattern="^[A-Z]{3}$",
        description="ISO 3166-1 alpha-3 country code, e.g. VNM",
    ),
]
Lat = Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False, description="latitude")]
Lon = Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False, description="longitude")]
