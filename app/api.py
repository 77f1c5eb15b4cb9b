"""Every router of the API, in one list: the order in which a request is matched against them."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from app import openapi
from app.alerts.routes import router as alerts_router
from app.analysis.adjacency_routes import router as adjacency_router
from app.analysis.borderzone_routes import router as borderzone_router
from app.analysis.clusters_routes import router as clusters_router
from app.analysis.emerging_routes import router as emerging_router
from app.analysis.hotspots_routes import router as hotspots_router
from app.analysis.nearrepeat_routes import router as nearrepeat_router
from app.analysis.stats_routes import router as stats_router
from app.audit.routes import router as audit_router
from app.auth.routes import router as auth_router
from app.borders.routes import router as borders_router
from app.cooperation.routes import router as cooperation_router
from app.events.routes import router as events_router
from app.health.routes import router as health_router
from app.incidents.export_routes import router as export_router
from app.incidents.import_routes import router as import_router
from app.incidents.nearby_routes import router as nearby_router
from app.incidents.note_routes import router as notes_router
from app.incidents.routes import router as incidents_router
from app.jurisdictions.routes import router as jurisdictions_router
from app.ogc.routes import router as ogc_router
from app.ogc.style_routes import router as ogc_styles_router
from app.photos.routes import router as photos_router
from app.places.routes import router as places_router
from app.posts.routes import router as posts_router
from app.reports.routes import router as reports_router
from app.tiles.routes import router as tiles_router
from app.units.routes import router as units_router
from app.web import routes as web

# A request is matched against the routes one after the other, in this order, so every route
# before a path is one more pattern tried for each of its requests: the tiles come first
# because a map view asks for dozens of them at once, then one incident and nearby, a field
# unit's most frequent requests (after 17 routers their matching cost 0.25-0.37 ms a request,
# docs/performance.md). No path shadows another: ids in paths have converters
# (`{incident_id:uuid}`), so the order never decides which route answers.
ROUTERS: list[APIRouter] = [
    tiles_router,
    health_router,
    incidents_router,
    nearby_router,
    auth_router,
    audit_router,
    jurisdictions_router,
    places_router,
    borders_router,
    posts_router,
    units_router,
    cooperation_router,
    adjacency_router,
    hotspots_router,
    clusters_router,
    emerging_router,
    nearrepeat_router,
    stats_router,
    borderzone_router,
    reports_router,
    photos_router,
    notes_router,
    import_router,
    export_router,
    events_router,
    alerts_router,
    ogc_router,
    ogc_styles_router,
]
# answered without a key: no 401/429 in their OpenAPI entries
OPEN: list[APIRouter] = [health_router]


def include(app: FastAPI) -> None:
    """Add every router, then the dashboard's pages and static files."""
    keyed = openapi.problems(*openapi.KEYED)  # in the OpenAPI document of every keyed route
    for router in ROUTERS:
        app.include_router(router, responses=None if router in OPEN else keyed)
    web.mount(app)
