"""TileJSON 3.0.0 documents: what a layer holds, where its tiles are, and its data's extent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

WORLD = [-180.0, -85.051129, 180.0, 85.051129]  # what Web Mercator can show


@dataclass(frozen=True)
class LayerInfo:
    """What TileJSON says about a layer."""

    description: str
    minzoom: int
    maxzoom: int
    fields: dict[str, str]


@dataclass(frozen=True)
class Extent:
    """Where a layer's TileJSON bounds come from: a table's extent, widened by `pad_deg`."""

    table: str
    pad_deg: float = 0.0


async def bounds(*, session: AsyncSession, extent: Extent) -> list[float]:
    """West, south, east, north of the table's geometries, widened and clamped to WORLD (WORLD
    when the table is empty)."""
    row = (
        await session.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)"
                f" FROM (SELECT ST_Extent(geom) AS e FROM {extent.table}) x"
            )
        )
    ).one()
    if row[0] is None:
        return list(WORLD)
    w, s, e, n = (float(v) for v in row)
    pad = extent.pad_deg
    return [
        round(max(WORLD[0], w - pad), 6),
        round(max(WORLD[1], s - pad), 6),
        round(min(WORLD[2], e + pad), 6),
        round(min(WORLD[3], n + pad), 6),
    ]


def document(
    *, layer: str, info: LayerInfo, url: str, version: str, bounds: list[float]
) -> dict[str, Any]:
    """A TileJSON 3.0.0 document for one layer."""
    return {
        "tilejson": "3.0.0",
        "name": f"borderwatch {layer}",
        "description": info.description,
        "tiles": [url],
        "scheme": "xyz",
        "minzoom": info.minzoom,
        "maxzoom": info.maxzoom,
        "bounds": bounds,
        "center": [
            round((bounds[0] + bounds[2]) / 2, 6),
            round((bounds[1] + bounds[3]) / 2, 6),
            max(info.minzoom, 5),
        ],
        "vector_layers": [
            {
                "id": layer,
                "description": info.description,
                "minzoom": info.minzoom,
                "maxzoom": info.maxzoom,
                "fields": info.fields,
            }
        ],
        "data_version": version,
    }
