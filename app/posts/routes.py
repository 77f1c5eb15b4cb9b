"""/border-posts: list, nearest, read (with history), create, change (If-Match), close, kinds,
areas of responsibility, import and export, re-derivation jobs."""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from app.auth.deps import Admin, ReferenceReader
from app.auth.service import Identity
from app.bodies import body_of
from app.db import SessionDep
from app.errors import Forbidden, InvalidInput
from app.geo.geojson import DOC, GEOJSON, GeoJSONResponse, response_doc
from app.geo.params import Lat, Lon, SimplifyM
from app.incidents.service import etag, parse_if_match, required_version
from app.openapi import problems
from app.posts import areas, files, manage, rederive, service

router = APIRouter(tags=["border posts"])
log = logging.getLogger("borderwatch")

Kind = Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="a kind's code")]
PostCode = Annotated[str, Path(pattern=manage.CODE_PATTERN, description="the post's code")]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]


async def _finish(request: Request, job_id: int) -> None:
    """Run a job too large for its request, after the answer, on a session of its own (a
    stopped process leaves it for `borderwatch posts rederive`)."""
    try:
        async with request.app.state.sessionmaker() as session:
            await rederive.run(session=session, job_id=job_id)
    except Exception:  # the answer is gone: the log and the job's state tell
        log.exception(
            "re-derivation job %s stopped (borderwatch posts rederive resumes it)", job_id
        )


def _follow(request: Request, background: BackgroundTasks, job: dict[str, Any] | None) -> None:
    if job is not None and job["state"] != "done":
        background.add_task(_finish, request, int(job["id"]))


def _feature(feature: dict[str, Any], job: dict[str, Any] | None, status: int = 200) -> Response:
    body = feature | ({"rederive": job} if job is not None else {})
    return JSONResponse(
        body,
        status_code=status,
        media_type=GEOJSON,
        headers={"ETag": etag(int(feature["properties"]["version"]))},
    )


def _feature_doc(description: str, *, location: bool = False) -> dict[str, Any]:
    doc = response_doc("Feature", description)
    headers = {"ETag": "the version, for If-Match"}
    if location:
        headers["Location"] = "the post's URL"
    doc["headers"] = {
        name: {"description": text, "required": True, "schema": {"type": "string"}}
        for name, text in headers.items()
    }
    return doc


WRITE_NOTE = " (`rederive`: the job deriving incidents' nearest post again)"


class CloseIn(BaseModel):
    """When the post closes (exclusive; default today, Vietnam's calendar)."""

    model_config = ConfigDict(extra="forbid")

    on: date | None = None


class KindIn(BaseModel):
    """A new kind of post."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name_vi: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    gate: bool = False


def _national(admin: Identity, what: str) -> None:
    if not admin.scope.national:
        raise Forbidden(f"{what} needs a national admin key")


@router.get(
    "/border-posts",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Border posts as a FeatureCollection",
)
async def list_border_posts(
    session: SessionDep,
    _: ReferenceReader,
    kind: Kind | None = None,
    border: Annotated[
        str | None, Query(pattern="^[A-Z]{3}-[A-Z]{3}$", description="e.g. VNM-LAO")
    ] = None,
    province: Annotated[
        str | None,
        Query(max_length=32, description="either map: VN-44 (former) or VN-P91 (since 2025)"),
    ] = None,
    on: Annotated[date | None, Query(description="the posts in force on this day")] = None,
    closed: Annotated[bool, Query(description="every post, closed ones too")] = False,
) -> GeoJSONResponse:
    """Filter by kind, border segment and province; the posts in force today unless `on` or
    `closed` say otherwise. An unknown kind is 422."""
    if kind is not None and kind not in {k["code"] for k in await manage.kinds(session)}:
        raise InvalidInput(f"unknown kind '{kind}' (GET /border-posts/kinds)", field="kind")
    body = await service.list_features(
        session=session, kind=kind, border=border, province=province, on=on, closed=closed
    )
    return GeoJSONResponse(body)


@router.get(
    "/border-posts/nearest",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="The k nearest border posts with their geodesic distance",
)
async def nearest_posts(
    session: SessionDep,
    _: ReferenceReader,
    lat: Lat,
    lon: Lon,
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> GeoJSONResponse:
    """Nearest first, `distance_m` on the WGS 84 spheroid; the properties of /border-posts;
    posts in force today."""
    return GeoJSONResponse(await service.nearest(session=session, lon=lon, lat=lat, k=k))


@router.get("/border-posts/kinds", summary="The kinds of post (Vietnamese and English names)")
async def list_kinds(session: SessionDep, _: ReferenceReader) -> JSONResponse:
    """An extensible list (like incident categories); `gate`: opening status and hours apply."""
    return JSONResponse({"kinds": await manage.kinds(session)})


@router.post(
    "/border-posts/kinds",
    status_code=201,
    summary="Add a kind of post (national admins)",
    responses=problems(403, 409),
)
async def add_kind(body: KindIn, session: SessionDep, admin: Admin) -> JSONResponse:
    """Audited."""
    _national(admin, "adding a kind of post")
    kind = await manage.add_kind(session, **body.model_dump(), actor=admin.actor)
    await session.commit()
    return JSONResponse(kind, status_code=201)


@router.get(
    "/border-posts/areas",
    response_class=GeoJSONResponse,
    responses=DOC,
    summary="Areas of responsibility of the posts (map overlay)",
)
async def post_areas(
    session: SessionDep,
    _: ReferenceReader,
    simplify: SimplifyM = None,
    closed: Annotated[bool, Query(description="closed posts' last areas too")] = False,
) -> GeoJSONResponse:
    """One Feature per post with an area (id: its code): drawn, imported, or generated as the
    post's share of the border zone (docs/posts.md)."""
    return GeoJSONResponse(
        await areas.features(session=session, simplify_m=simplify, closed=closed)
    )


@router.post(
    "/border-posts/areas/generate",
    summary="Make the generated areas again with another depth (national admins)",
    responses=problems(403),
)
async def generate_areas(
    session: SessionDep,
    admin: Admin,
    km: Annotated[float, Query(gt=0, le=areas.MAX_KM)] = areas.DEFAULT_KM,
) -> JSONResponse:
    """Drawn and imported areas stay; returns how many areas changed."""
    _national(admin, "generating areas")
    changed = await areas.generate(session=session, km=km, actor=admin.actor)
    await session.commit()
    return JSONResponse({"changed": changed, "km": km})


@router.get(
    "/border-posts/export",
    summary="Every post as CSV, GeoJSON or GeoPackage",
    response_class=Response,
    responses={
        200: {
            "description": "the file",
            "content": {
                GEOJSON: {"schema": {"$ref": "#/components/schemas/FeatureCollection"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/geopackage+sqlite3": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        }
    },
)
async def export_posts(
    session: SessionDep,
    _: ReferenceReader,
    fmt: Annotated[files.Format, Query(alias="format")] = "geojson",
) -> Response:
    """Closed posts too (valid_to); drawn and imported areas as `area` / `area_wkt`."""
    data = await files.export(session=session, fmt=fmt)
    ext = {"csv": "csv", "geojson": "geojson", "gpkg": "gpkg"}[fmt]
    return Response(
        data,
        media_type=files.media_type(fmt),
        headers={"Content-Disposition": f'attachment; filename="border_posts.{ext}"'},
    )


@router.post(
    "/border-posts/import",
    summary="Import posts from CSV, GeoJSON or GeoPackage (all-or-nothing)",
    responses=problems(403, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the file itself as the body",
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "application/geo+json": {"schema": {"type": "string", "format": "binary"}},
                "application/geopackage+sqlite3": {
                    "schema": {"type": "string", "format": "binary"}
                },
            },
        }
    },
)
async def import_posts(
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    admin: Admin,
    fmt: Annotated[files.Format | None, Query(alias="format")] = None,
) -> JSONResponse:
    """Rows with an existing code change that post; others create posts. Any invalid row (or a
    post outside a scoped admin's area) rejects the file: 422 with `errors` per row."""
    fmt = fmt or files.guess(request.headers.get("content-type"))
    if fmt is None:
        raise HTTPException(
            415, "send the file with Content-Type text/csv, application/geo+json or"
            " application/geopackage+sqlite3, or name it: ?format=csv|geojson|gpkg",
        )  # fmt: skip
    body = body_of(request)
    data = body.data if body.data is not None else (body.path.read_bytes() if body.path else b"")
    if not data:
        raise InvalidInput("the upload is empty", field="body")
    rows = files.read(data, fmt)
    report = await files.import_rows(
        session=session, rows=rows, scope=admin.scope, actor=admin.actor
    )
    await session.commit()
    _follow(request, background, report["rederive"])
    return JSONResponse(report)


@router.get(
    "/border-posts/jobs/{job_id}",
    summary="A re-derivation job: state and progress",
    responses=problems(404),
)
async def job_status(job_id: JobId, session: SessionDep, _: ReferenceReader) -> JSONResponse:
    """`done` of `total` incidents derived again, `changed` of them got another nearest post."""
    return JSONResponse(await rederive.status(session=session, job_id=job_id))


@router.get(
    "/border-posts/{code}",
    summary="One post (GeoJSON Feature, its area, and with ?history=true its history)",
    response_class=GeoJSONResponse,
    responses={200: _feature_doc("the post"), **problems(404)},
)
async def get_post(
    code: PostCode,
    session: SessionDep,
    _: ReferenceReader,
    history: Annotated[bool, Query(description="add the post's history")] = False,
) -> Response:
    """The ETag is the version, for If-Match."""
    return _feature(await manage.get(session, code, history=history), None)


@router.get(
    "/border-posts/{code}/history",
    summary="A post's history: version, action, who, when, what changed",
    responses=problems(404),
)
async def post_history(code: PostCode, session: SessionDep, _: ReferenceReader) -> JSONResponse:
    """Oldest first; append-only."""
    return JSONResponse({"code": code, "history": await manage.history_of(session, code)})


@router.post(
    "/border-posts",
    status_code=201,
    summary="Create a post (admins; a scoped admin inside its area)",
    response_class=GeoJSONResponse,
    responses={201: _feature_doc("created" + WRITE_NOTE, location=True), **problems(403, 409)},
)
async def create_post(
    body: manage.PostIn,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    admin: Admin,
) -> Response:
    """Audited, with history. The incidents whose nearest post it becomes are derived again
    (`rederive`: the job; up to 5 000 incidents before the answer, more after it: follow
    `status_url`)."""
    feature, job = await manage.create(session, body=body, scope=admin.scope, actor=admin.actor)
    await session.commit()
    _follow(request, background, job)
    response = _feature(feature, job, 201)
    response.headers["Location"] = f"/border-posts/{body.code}"
    return response


@router.patch(
    "/border-posts/{code}",
    summary="Change a post (If-Match required)",
    response_class=GeoJSONResponse,
    responses={200: _feature_doc("changed" + WRITE_NOTE), **problems(403, 404, 412, 428)},
)
async def patch_post(
    code: PostCode,
    body: manage.PostPatch,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    admin: Admin,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """412 when the version is stale, 428 without If-Match. A scoped admin may change only
    posts inside its area, and not move one out of it (403)."""
    expected = required_version(if_match, "/border-posts/{code}")
    feature, job = await manage.update(
        session, code=code, patch=body, expected_version=expected, scope=admin.scope,
        actor=admin.actor,
    )  # fmt: skip
    await session.commit()
    _follow(request, background, job)
    return _feature(feature, job)


@router.post(
    "/border-posts/{code}/close",
    summary="Close a post (it is kept, with its valid_to)",
    response_class=GeoJSONResponse,
    responses={200: _feature_doc("closed" + WRITE_NOTE), **problems(403, 404, 409, 412)},
)
async def close_post(
    code: PostCode,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    admin: Admin,
    body: CloseIn | None = None,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """Incidents from `on` get another nearest post; those before keep this one."""
    feature, job = await manage.close(
        session, code=code, on=body.on if body else None,
        expected_version=parse_if_match(if_match) if if_match else None, scope=admin.scope,
        actor=admin.actor,
    )  # fmt: skip
    await session.commit()
    _follow(request, background, job)
    return _feature(feature, job)
