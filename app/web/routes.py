"""GET / (the dashboard), its static files, MapLibre GL JS from node_modules, its config; GET
/docs (Swagger UI from node_modules).

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

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"], summary="The map dashboard")
async def dashboard() -> FileResponse:
    """index.html of the dashboard."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=NO_CACHE)


@router.api_route("/docs", methods=["GET", "HEAD"], summary="Interactive API documentation")
async def api_docs() -> FileResponse:
    """Swagger UI over /openapi.json, from the npm package (works offline)."""
    return FileResponse(STATIC / "docs.html", media_type="text/html", headers=NO_CACHE)


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
