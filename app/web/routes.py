"""GET / (the dashboard), its static files, MapLibre GL JS from node_modules, its config; GET
/docs (Swagger UI from node_modules); GET /field (the field page for phones) with its service
worker (GET /field/sw.js) and web app manifest.

The files are public (they hold no data and no secret); every data request the page makes
carries the API key like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from app.config import PROJECT_ROOT

STATIC = Path(__file__).resolve().parent / "static"
MAPLIBRE_DIST = PROJECT_ROOT / "node_modules" / "maplibre-gl" / "dist"
SWAGGER_UI_DIST = PROJECT_ROOT / "node_modules" / "swagger-ui-dist"
# the field page's browser modules: IndexedDB made usable (its offline queue), EXIF reading (a
# photo's GPS position, read on the device before the photo is resized)
IDB_DIST = PROJECT_ROOT / "node_modules" / "idb" / "build"
EXIFR_DIST = PROJECT_ROOT / "node_modules" / "exifr" / "dist"
# the page and its modules change with the app: revalidate them (cheap 304s) on every load
NO_CACHE = {"Cache-Control": "no-cache"}
# The field page's service worker: its scope is /field (the page itself, not only what lies
# under /field/), wider than its own folder, so the header allows it. A worker runs under the
# policy delivered with its script: it may fetch this origin only (the data responses' policy,
# default-src 'none', would stop every fetch it makes).
SERVICE_WORKER_HEADERS = {
    **NO_CACHE,
    "Service-Worker-Allowed": "/field",
    "Content-Security-Policy": "default-src 'none'; connect-src 'self'; script-src 'self'",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"], summary="The map dashboard")
async def dashboard() -> FileResponse:
    """index.html of the dashboard."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=NO_CACHE)


@router.api_route("/docs", methods=["GET", "HEAD"], summary="Interactive API documentation")
async def api_docs() -> FileResponse:
    """Swagger UI over /openapi.json, from the npm package (works offline)."""
    return FileResponse(STATIC / "docs.html", media_type="text/html", headers=NO_CACHE)


@router.api_route("/field", methods=["GET", "HEAD"], summary="The field page (phones)")
async def field_page() -> FileResponse:
    """field.html: record incidents offline, near me, my records."""
    return FileResponse(STATIC / "field.html", media_type="text/html", headers=NO_CACHE)


@router.api_route("/field/sw.js", methods=["GET", "HEAD"], summary="The field page's worker")
async def field_service_worker() -> FileResponse:
    """The service worker that keeps the field page, its map and its data for offline use."""
    return FileResponse(
        STATIC / "js" / "field" / "sw.js",
        media_type="text/javascript",
        headers=SERVICE_WORKER_HEADERS,
    )


@router.get("/dashboard/config.json", summary="Settings the dashboard needs (no secrets)")
async def dashboard_config(request: Request) -> JSONResponse:
    """The optional raster base map and the home country."""
    settings = request.app.state.settings
    return JSONResponse(
        {
            "basemap_url": settings.basemap_url,
            "basemap_attribution": settings.basemap_attribution,
            "home_country": settings.home_country,
        },
        headers=NO_CACHE,
    )


def mount(app: FastAPI) -> None:
    """Add the dashboard's routes and static mounts to the app."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")
    # check_dir=False: the app still starts without `npm ci`; the page then says what is missing
    app.mount(
        "/vendor/maplibre-gl",
        StaticFiles(directory=MAPLIBRE_DIST, check_dir=False),
        name="maplibre-gl",
    )
    app.mount(
        "/vendor/swagger-ui",
        StaticFiles(directory=SWAGGER_UI_DIST, check_dir=False),
        name="swagger-ui",
    )
    app.mount("/vendor/idb", StaticFiles(directory=IDB_DIST, check_dir=False), name="idb")
    app.mount("/vendor/exifr", StaticFiles(directory=EXIFR_DIST, check_dir=False), name="exifr")
