"""Query parameters shared by the grid analyses (hot spots, emerging hot spots)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

CellKm = Annotated[
    float,
    Query(description="distance between neighbouring cell centres (km), 0.5 to 100"),
]
StudyAreaParam = Annotated[
    str,
    Query(
        max_length=200,
        description="`border-zone` (the home side within 50 km of the national border),"
        " `jurisdiction:{code}` or `bbox:minLon,minLat,maxLon,maxLat` (∩ the home country)",
    ),
]
