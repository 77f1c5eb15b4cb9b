"""The tile layers, one record each: what a layer's version is made of, how one of its tiles is
made, what its TileJSON and its routes say, and what a request may ask of it.

app/tiles/routes.py serves every layer here through the same two handlers; a new layer is one
more entry in LAYERS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app import i18n
from app.i18n import Lang
from app.incidents.filters import IncidentFilter
from app.tiles import emerging, hotspots, incidents, reference, versions
from app.tiles.emerging import EmergingCache
from app.tiles.hotspots import HotspotCache
from app.tiles.tile import Tile
from app.tiles.tilejson import Extent, LayerInfo

# the parameters of GET /incidents that the incident layers take (carried into their TileJSON)
INCIDENT_FILTERS = (
    "datetime",
    "category",
    "status",
    "severity_min",
    "jurisdiction",
    "cooperation",
    "border_km_max",
    "q",
    "bbox",
)


@dataclass(frozen=True)
class Ask:
    """What one request asks of a layer besides the tile: `key` is everything besides the data
    and the tile that decides the body (it goes into the ETag); the rest is what the layer's
    tile needs."""

    key: tuple[Hashable, ...] = ()
    filt: IncidentFilter | None = None
    aggregate_only: bool = False  # viewers: aggregates only
    home: str = ""  # the home country (hot spots)
    level: str | None = None  # jurisdictions: one level only
    on: date | None = None  # jurisdictions: the units in force that day
    grids: HotspotCache | None = field(default=None, compare=False)
    lang: Lang = i18n.DEFAULT  # incidents: the language of the names beside the codes
    # emerging hot spots: the cube's span ("2024-12/2026-11", part of the version), the
    # instant it was read at, and the process's computed cubes
    period: str = ""
    now: datetime | None = None
    cubes: EmergingCache | None = field(default=None, compare=False)

    @property
    def view(self) -> str:
        """What, besides the data, decides the layer's content: for an incident layer this
        principal's scope, for jurisdictions the day (without `at`, today: the version, so
        the URL, moves on the day the map changes instead of serving yesterday's units)."""
        if self.filt is None:
            return self.on.isoformat() if self.on else ""
        view = versions.incident_view(self.filt, aggregate_only=self.aggregate_only, home=self.home)
        return f"{view}|{self.period}" if self.period else view


# the tile, given the version read before it
Make = Callable[[AsyncSession, Ask, Tile, str], Awaitable[bytes]]
# the tile and the versions read in the same statement
Snapshot = Callable[[AsyncSession, Ask, Tile], Awaitable[tuple[bytes, versions.Versions]]]


@dataclass(frozen=True)
class Layer:
    """A tile layer (its MVT layer inside each tile has the same name)."""

    name: str
    info: LayerInfo
    depends: tuple[str, ...]  # the change counters of the data it is made of
    extent: Extent  # where its TileJSON bounds come from
    summary: str  # of the tile route
    doc: str  # of the tile route: the properties
    tilejson_summary: str
    tilejson_doc: str
    make: Make | None = None
    snapshot: Snapshot | None = None  # instead of make: the tile names its version exactly
    incident_filters: bool = False  # takes the filters of GET /incidents (and needs a key)
    params: tuple[str, ...] = ()  # its own query parameters, carried into its TileJSON

    @property
    def carried(self) -> tuple[str, ...]:
        """The query parameters its TileJSON's template carries over."""
        return (INCIDENT_FILTERS if self.incident_filters else ()) + self.params

    def version(self, found: versions.Versions, ask: Ask) -> str:
        """Its version token for this request."""
        return versions.token(self.depends, found, ask.view)


def _filter(ask: Ask) -> IncidentFilter:
    assert ask.filt is not None  # the incident layers' requests always carry one
    return ask.filt


async def _incidents(
    session: AsyncSession, ask: Ask, tile: Tile
) -> tuple[bytes, versions.Versions]:
    return await incidents.incidents_tile(
        session=session,
        filt=_filter(ask),
        tile=tile,
        aggregate_only=ask.aggregate_only,
        lang=ask.lang,
    )


async def _hotspots(session: AsyncSession, ask: Ask, tile: Tile, version: str) -> bytes:
    assert ask.grids is not None  # made at start-up (app/main.py)
    filt = _filter(ask)
    grid = await ask.grids.get((filt, version), session, filt, ask.home)
    return await hotspots.hotspots_tile(session=session, grid=grid, tile=tile)


async def _emerging(session: AsyncSession, ask: Ask, tile: Tile, version: str) -> bytes:
    assert ask.cubes is not None and ask.now is not None  # emerging_ask sets both
    filt = _filter(ask)
    grid = await ask.cubes.get((filt, version), session, filt, ask.home, ask.now)
    return await emerging.emerging_tile(session=session, grid=grid, tile=tile, lang=ask.lang)


async def _jurisdictions(session: AsyncSession, ask: Ask, tile: Tile, _version: str) -> bytes:
    assert ask.on is not None  # jurisdictions_ask always names the day
    return await reference.jurisdictions_tile(
        session=session, tile=tile, level=ask.level, on=ask.on
    )


async def _borders(session: AsyncSession, _ask: Ask, tile: Tile, _version: str) -> bytes:
    return await reference.borders_tile(session=session, tile=tile)


async def _border_posts(session: AsyncSession, ask: Ask, tile: Tile, _version: str) -> bytes:
    assert ask.on is not None  # posts_ask always names the day
    return await reference.border_posts_tile(session=session, tile=tile, on=ask.on)


# incidents and hot spots may sit offshore, within 12 nautical miles of a province
OFFSHORE_DEG = 0.25

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer(
            name="incidents",
            info=LayerInfo(
                "Incidents: one point per incident from zoom 10 (readers), aggregated below it"
                " and for viewer keys (`cluster` = true)",
                0,
                16,
                {
                    "id": "String: incident UUID (points only)",
                    "category": "String: category code; for an aggregate the most frequent",
                    "severity": "Number: 1 to 5 (points only)",
                    "status": "String: lifecycle status (points only)",
                    "occurred_at": "String: ISO 8601 time (points only)",
                    "province": "String: today's province code (points only)",
                    "commune": "String: today's commune code (points only)",
                    "province_at_occurrence": "String: the province in force when it occurred"
                    " (points only)",
                    "commune_at_occurrence": "String: the commune in force when it occurred"
                    " (points only)",
                    "maritime_zone": "String: territorial_sea or contiguous_zone at sea"
                    " (points only)",
                    "offshore_km": "Number: distance from the coast at sea (points only)",
                    "count": "Number: incidents in the aggregate (aggregates only)",
                    "severity_max": "Number: highest severity in the aggregate (aggregates only)",
                    "cluster": "Boolean: true for an aggregate, false for an incident",
                },
            ),
            depends=("incidents", "jurisdictions"),  # scopes follow the boundaries too
            extent=Extent("jurisdiction", OFFSHORE_DEG, home=True),
            summary="Incidents vector tile: points from zoom 10, aggregates below (viewers:"
            " always)",
            doc="Layer `incidents`: per incident the tile fields of docs/fields.md (`id`,"
            " `category`, `category_name`, `severity`, `status`, `status_name`, `occurred_at`,"
            " places and their names, border and post with names and distances; absent when"
            " empty) and `cluster` (false); aggregates carry `count`, `severity_max`,"
            " `category`, `cluster` (true). Names in `lang` (vi by default).",
            tilejson_summary="TileJSON of the incidents layer (filters carried over)",
            tilejson_doc="TileJSON 3.0.0; its tile URL carries `v` (the version) and the"
            " filters given here.",
            snapshot=_incidents,
            incident_filters=True,
            params=("lang",),
        ),
        Layer(
            name="jurisdictions",
            info=LayerInfo(
                "Countries, provinces and communes in force on one day (`at`, default today in"
                " Vietnam); communes from zoom"
                f" {reference.COMMUNE_MIN_ZOOM} only",
                0,
                12,
                {
                    "code": "String: ISO 3166 code, or VN-P<official> (2025 provinces),"
                    " VN-C<official> (communes)",
                    "name": "String",
                    "name_local": "String: the name in Vietnamese, with diacritics",
                    "level": "String: country, province or commune (communes from zoom"
                    f" {reference.COMMUNE_MIN_ZOOM})",
                    "type_local": "String: Tỉnh, Thành phố, Xã, Phường, Đặc khu …",
                    "official_code": "String: the statistics office's code",
                    "geometry_approximate": "Boolean: the polygon is an approximation built"
                    " from the official centroid and area (draw it as such)",
                    "country": "String: ISO 3166-1 alpha-3",
                    "parent_code": "String: the province of a commune, the country of a province",
                },
            ),
            depends=("jurisdictions",),
            extent=Extent("jurisdiction"),
            summary="Jurisdictions vector tile: the units in force on a day, with a `level`"
            " property",
            doc="Layer `jurisdictions`: the countries, provinces and communes in force on `at`"
            " (YYYY-MM-DD, default today in Vietnam: before 2025-07-01 the 63 provinces, since"
            " then the 34 and their communes); communes only from zoom"
            f" {reference.COMMUNE_MIN_ZOOM} (below it `level=commune` is an empty tile);"
            " polygons simplified to the zoom; `code`, `name`, `name_local`, `level`,"
            " `type_local`, `official_code`, `geometry_approximate`, `country`,"
            " `parent_code`.",
            tilejson_summary="TileJSON of the jurisdictions layer",
            tilejson_doc="TileJSON 3.0.0 (`level` and `at` carried over; communes from zoom"
            f" {reference.COMMUNE_MIN_ZOOM}).",
            make=_jurisdictions,
            params=("level", "at"),
        ),
        Layer(
            name="borders",
            info=LayerInfo(
                "National border segments per country pair",
                0,
                12,
                {
                    "code": "String: e.g. VNM-LAO",
                    "country_a": "String",
                    "country_b": "String",
                    "length_km": "Number",
                },
            ),
            depends=("borders",),
            extent=Extent("border_segment"),
            summary="National border segments vector tile",
            doc="Layer `borders`: lines simplified to the zoom; `code`, `country_a`,"
            " `country_b`, `length_km`.",
            tilejson_summary="TileJSON of the national borders layer",
            tilejson_doc="TileJSON 3.0.0.",
            make=_borders,
        ),
        Layer(
            name="border_posts",
            info=LayerInfo(
                "Border gates, border-guard stations, police, customs and coast-guard posts",
                0,
                14,
                {
                    "code": "String",
                    "name": "String",
                    "name_local": "String",
                    "kind": "String",
                    "agency": "String",
                    "border": "String: border segment code",
                    "province_code": "String",
                    "position_approximate": "Boolean",
                },
            ),
            depends=("border_posts",),
            extent=Extent("border_post"),
            summary="Border posts vector tile",
            doc="Layer `border_posts`: the posts in force today (a closed post is not drawn),"
            " points; `code`, `name`, `name_local`, `kind`, `agency`, `border`,"
            " `province_code`, `position_approximate`.",
            tilejson_summary="TileJSON of the border posts layer",
            tilejson_doc="TileJSON 3.0.0.",
            make=_border_posts,
        ),
        Layer(
            name="hotspots",
            info=LayerInfo(
                f"Getis-Ord Gi* hot and cold spots: {hotspots.CELL_KM:g} km hexagons over the"
                " border zone (the defaults of /analysis/hotspots)",
                5,
                12,
                {
                    "count": "Number: matching incidents in the cell",
                    "gi_z": "Number: Gi* z-score",
                    "gi_p": "Number: two-sided p-value",
                    "bin": "Number: +3/+2/+1 hot (99/95/90 %), 0, -1/-2/-3 cold",
                },
            ),
            depends=("incidents", "jurisdictions", "borders"),
            extent=Extent("jurisdiction", OFFSHORE_DEG, home=True),
            summary="Hot-spot vector tile: Gi* hexagons (5 km, border zone) with count, gi_z, bin",
            doc="Layer `hotspots`: the cells of GET /analysis/hotspots (default parameters)"
            " reaching into the tile; the grid is computed once per filter and version in each"
            " process.",
            tilejson_summary="TileJSON of the hot-spot layer (filters carried over)",
            tilejson_doc="TileJSON 3.0.0 of the Gi* grid for the default parameters of"
            " /analysis/hotspots.",
            make=_hotspots,
            incident_filters=True,
        ),
        Layer(
            name="emerging-hotspots",
            info=LayerInfo(
                f"Emerging hot spots: {emerging.CELL_KM:g} km hexagons over the border zone,"
                " each with Esri's category of its Gi* series over monthly steps and the"
                " Mann-Kendall trend (the defaults of /analysis/emerging-hotspots; without"
                " `datetime` the last 24 complete months)",
                5,
                12,
                {
                    "cell": "String: the cell's id in /analysis/emerging-hotspots (i:j)",
                    "category": "String: new_hot_spot, consecutive_hot_spot,"
                    " intensifying_hot_spot, persistent_hot_spot, diminishing_hot_spot,"
                    " sporadic_hot_spot, oscillating_hot_spot, historical_hot_spot, the same"
                    " for cold spots, or no_pattern",
                    "category_name": "String: the category's name in `lang` (vi by default)",
                    "trend_s": "Number: Mann-Kendall S of the cell's z-scores (absent: no"
                    " trend can be computed)",
                    "trend_z": "Number: Mann-Kendall z-score (positive: rising)",
                    "trend_p": "Number: the trend's two-sided p-value",
                    "count": "Number: matching incidents in the cell over the whole span",
                    "count_last": "Number: those of the last step",
                    "hot_steps": "Number: steps in which the cell is a significant hot spot",
                    "cold_steps": "Number: steps in which it is a significant cold spot",
                    "period": "String: the first and last step (YYYY-MM/YYYY-MM)",
                },
            ),
            depends=("incidents", "jurisdictions", "borders"),
            extent=Extent("jurisdiction", OFFSHORE_DEG, home=True),
            summary="Emerging hot-spot vector tile: 5 km hexagons (border zone) with their"
            " category, trend and counts",
            doc="Layer `emerging-hotspots`: the cells of GET /analysis/emerging-hotspots"
            " (default parameters: border zone, 5 km, monthly steps, one time neighbour, FDR)"
            " reaching into the tile, with `cell`, `category`, `category_name` (in `lang`),"
            " `trend_s`, `trend_z`, `trend_p`, `count`, `count_last`, `hot_steps`,"
            " `cold_steps` and `period`; the cube is computed once per filter and version in"
            " each process. Without `datetime` the cube spans the last 24 complete months, and"
            " the version moves when a month begins.",
            tilejson_summary="TileJSON of the emerging hot-spot layer (filters carried over)",
            tilejson_doc="TileJSON 3.0.0 of the emerging hot spots for the default parameters"
            " of /analysis/emerging-hotspots.",
            make=_emerging,
            incident_filters=True,
            params=("lang",),
        ),
    )
}
