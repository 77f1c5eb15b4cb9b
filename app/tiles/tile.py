"""Tile maths: an XYZ tile address, its bounds in Web Mercator metres and in degrees.

Tiles are Web Mercator (EPSG:3857) XYZ tiles, 4096 units across. A point belongs to exactly one
tile: it is in tile (x, y) when west <= lon < east and south < lat <= north, so nothing is drawn
twice at a tile edge and the features of a tile can be compared with the data inside its
bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.errors import AppError, NotFound

WORLD_M = 20037508.342789244  # half the width of the Web Mercator world (π x 6 378 137 m)
EXTENT = 4096  # tile coordinate units across a tile
BUFFER = 64  # units kept beyond the tile edge for lines and polygons (no seams when drawn)
MAX_ZOOM = 22


class InvalidTile(AppError):
    """A tile address that is not z/x/y with non-negative integers and z <= 22 (HTTP 400)."""

    title = "Invalid tile address"


@dataclass(frozen=True)
class Tile:
    """An XYZ tile and its bounds in Web Mercator metres and in degrees."""

    z: int
    x: int
    y: int

    @property
    def width_m(self) -> float:
        """Width (and height) of the tile in Web Mercator metres."""
        return 2 * WORLD_M / (1 << self.z)

    @property
    def buffer_m(self) -> float:
        """The BUFFER units beyond the tile's edge, in Web Mercator metres."""
        return self.width_m * BUFFER / EXTENT

    def mercator(self, pad_m: float = 0.0) -> tuple[float, float, float, float]:
        """xmin, ymin, xmax, ymax in EPSG:3857, widened by pad_m (clamped to the world)."""
        w = self.width_m
        xmin, ymax = -WORLD_M + self.x * w, WORLD_M - self.y * w
        return (
            max(-WORLD_M, xmin - pad_m),
            max(-WORLD_M, ymax - w - pad_m),
            min(WORLD_M, xmin + w + pad_m),
            min(WORLD_M, ymax + pad_m),
        )

    def lonlat(self, pad_m: float = 0.0) -> tuple[float, float, float, float]:
        """west, south, east, north in degrees."""
        return mercator_to_lonlat(self.mercator(pad_m))


def mercator_to_lonlat(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A Web Mercator box as west, south, east, north in degrees."""

    def lat(y: float) -> float:
        return math.degrees(math.atan(math.sinh(y / WORLD_M * math.pi)))

    return box[0] / WORLD_M * 180, lat(box[1]), box[2] / WORLD_M * 180, lat(box[3])


def tile_address(z: str, x: str, y: str) -> Tile:
    """Parse z/x/y: malformed, negative or z > 22 → InvalidTile (400); x or y beyond the
    2^z tiles of the zoom → NotFound (404)."""
    values = []
    for name, raw in (("z", z), ("x", x), ("y", y)):
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 8):
            raise InvalidTile(f"tile {name} must be a non-negative integer; got '{raw[:20]}'")
        values.append(int(raw))
    zz, xx, yy = values
    if zz > MAX_ZOOM:
        raise InvalidTile(f"zoom {zz} is beyond the deepest served ({MAX_ZOOM})", field="z")
    if xx >= 2**zz or yy >= 2**zz:
        raise NotFound(f"no tile {zz}/{xx}/{yy}: at zoom {zz}, x and y go from 0 to {2**zz - 1}")
    return Tile(zz, xx, yy)
