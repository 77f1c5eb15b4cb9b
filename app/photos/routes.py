"""Incident photo endpoints: thin — parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import Officer, Reader
from app.auth.service import Identity
from app.bodies import body_of
from app.db import SessionDep
from app.headers import none_match
from app.openapi import problem_response, problems
from app.photos import images, service
from app.photos.models import CAPTION_MAX, MEDIA_TYPES, PhotoList, PhotoOut

router = APIRouter(tags=["photos"])

# content never changes under an id: a client may keep it this long without asking again
MAX_AGE_S = 86_400
CACHE_CONTROL = f"private, max-age={MAX_AGE_S}"
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}

PHOTO_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image file itself as the body (not multipart/form-data); its"
        " content must be of the type Content-Type declares",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES
        },
    }
}
LOCATION = {"description": "the photo's URL", "required": True, "schema": {"type": "string"}}
ETAG = {
    "description": "the content's SHA-256 (for If-None-Match)",
    "required": True,
    "schema": {"type": "string"},
}
CACHE = {"description": CACHE_CONTROL, "required": True, "schema": {"type": "string"}}
BINARY = {"schema": {"type": "string", "format": "binary"}}
WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: problem_response(
        403, "the key's role may not write photos, or (an officer) the incident is another unit's"
    ),
    404: problem_response(404, "no such incident, or one deleted or outside the key's area"),
    413: problem_response(413, "the photo is over BORDERWATCH_PHOTO_MAX_BYTES"),
    415: problem_response(
        415,
        "Content-Type is not image/jpeg, image/png or image/webp, or the content is"
        " another type than it declares (GIF, SVG, PDF, …)",
    ),
    422: problem_response(
        422,
        "the content is not a readable image (empty, truncated, damaged), has more"
        " pixels than BORDERWATCH_PHOTO_MAX_PIXELS, or a parameter is invalid",
    ),
}
Caption = Annotated[
    str | None,
    Query(max_length=CAPTION_MAX, description=f"a caption (at most {CAPTION_MAX} characters)"),
]
IfNoneMatch = Annotated[
    str | None, Header(max_length=2000, description="ETags already held (304 when one matches)")
]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _url(request: Request, incident_id: uuid.UUID, photo_id: uuid.UUID) -> str:
    # the path of read_photo, written out: url_for scans every route
    return f"{_base(request)}/incidents/{incident_id}/photos/{photo_id}"


def _json(request: Request, row: service.Photo) -> dict[str, Any]:
    url = _url(request, row.incident_id, row.id)
    position = None
    if row.exif_lon is not None and row.exif_lat is not None:
        position = {"type": "Point", "coordinates": [row.exif_lon, row.exif_lat]}
    return {
        "id": str(row.id),
        "incident_id": str(row.incident_id),
        "media_type": row.media_type,
        "bytes": row.size,
        "width": row.width,
        "height": row.height,
        "sha256": row.sha256,
        "caption": row.caption,
        "taken_at": row.taken_at.isoformat() if row.taken_at is not None else None,
        "exif_position": position,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "url": url,
        "thumbnail_url": url + "/thumbnail",
    }


def _etag(sha256: str, suffix: str = "") -> str:
    return f'"{sha256}{suffix}"'


async def _upload(
    request: Request,
    session: AsyncSession,
    incident_id: uuid.UUID,
    photo_id: uuid.UUID,
    caption: str | None,
    principal: Identity,
) -> Response:
    """Store the request's body as the photo `photo_id` (PUT and POST alike)."""
    stored = await service.upload(
        session=session,
        settings=request.app.state.settings,
        incident_id=incident_id,
        photo_id=photo_id,
        data=body_of(request).data or b"",
        content_type=request.headers.get("content-type"),
        caption=caption,
        principal=principal,
    )
    return _stored(request, stored)


def _stored(request: Request, stored: service.Stored) -> Response:
    row = stored.photo
    return Response(
        orjson.dumps(_json(request, row)),
        status_code=201 if stored.created else 200,
        media_type="application/json",
        headers={"Location": _url(request, row.incident_id, row.id), "ETag": _etag(row.sha256)},
    )


def _upload_responses(created: str) -> dict[int | str, dict[str, Any]]:
    doc = {
        "description": created,
        "headers": {"Location": LOCATION, "ETag": ETAG},
        "model": PhotoOut,
    }
    return {201: doc, **WRITE_PROBLEMS}


@router.put(
    "/incidents/{incident_id:uuid}/photos/{photo_id:uuid}",
    status_code=201,
    summary="Add a photo under an id of the client's (idempotent: a retry answers 200)",
    openapi_extra=PHOTO_BODY,
    response_model=None,
    responses={
        200: {
            "description": "a retry: this id already holds this content",
            "headers": {"Location": LOCATION, "ETag": ETAG},
            "model": PhotoOut,
        },
        **_upload_responses("stored"),
        409: problem_response(
            409, "the id is taken by other content, or by another incident's photo"
        ),
    },
)
async def put_photo(
    incident_id: uuid.UUID,
    photo_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: Officer,
    caption: Caption = None,
) -> Response:
    """The body is the image (JPEG, PNG or WebP, as Content-Type says); 201 with Location, 200
    when the same id already holds the same content."""
    return await _upload(request, session, incident_id, photo_id, caption, principal)


@router.post(
    "/incidents/{incident_id:uuid}/photos",
    status_code=201,
    summary="Add a photo (the server chooses its id; PUT with an id of yours to retry safely)",
    openapi_extra=PHOTO_BODY,
    response_model=None,
    responses=_upload_responses("stored"),
)
async def post_photo(
    incident_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: Officer,
    caption: Caption = None,
) -> Response:
    """As PUT, under a new id."""
    return await _upload(request, session, incident_id, uuid.uuid4(), caption, principal)


@router.get(
    "/incidents/{incident_id:uuid}/photos",
    summary="An incident's photos (what they are and where; not their bytes), oldest first",
    response_model=PhotoList,
    responses=problems(403, 404),
)
async def list_photos(
    incident_id: uuid.UUID, request: Request, session: SessionDep, principal: Reader
) -> Response:
    """404 for an incident that is unknown, deleted or outside the key's area."""
    photos = await service.list_photos(
        session=session, incident_id=incident_id, scope=principal.scope
    )
    body = {"incident_id": str(incident_id), "photos": [_json(request, p) for p in photos]}
    return Response(orjson.dumps(body), media_type="application/json")


def _binary_doc(description: str, media_types: tuple[str, ...]) -> dict[int | str, Any]:
    headers = {"ETag": ETAG, "Cache-Control": CACHE}
    return {
        200: {
            "description": description,
            "headers": headers,
            "content": {media: BINARY for media in media_types},
        },
        304: {"description": "not modified (If-None-Match named its ETag)", "headers": headers},
        **problems(403, 404),
    }


def _not_modified(etag: str) -> Response:
    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})


@router.get(
    "/incidents/{incident_id:uuid}/photos/{photo_id:uuid}",
    summary="A photo's bytes, as uploaded (ETag = SHA-256; 304 for If-None-Match)",
    response_class=Response,
    responses=_binary_doc("the photo", MEDIA_TYPES),
)
async def read_photo(
    incident_id: uuid.UUID,
    photo_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: Reader,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """404 for a photo, or an incident, that is unknown, deleted or outside the key's area."""
    photo = await service.get_photo(
        session=session, incident_id=incident_id, photo_id=photo_id, scope=principal.scope
    )
    etag = _etag(photo.sha256)
    if none_match(if_none_match, etag):
        return _not_modified(etag)
    data = await service.content(session=session, settings=request.app.state.settings, photo=photo)
    name = f"{photo.id}.{EXTENSIONS[photo.media_type]}"
    return Response(
        data,
        media_type=photo.media_type,
        headers={
            "ETag": etag,
            "Cache-Control": CACHE_CONTROL,
            "Content-Disposition": f'inline; filename="{name}"',
        },
    )


@router.get(
    "/incidents/{incident_id:uuid}/photos/{photo_id:uuid}/thumbnail",
    summary=f"A photo's thumbnail: a JPEG at most {images.THUMBNAIL_PX} px on its long side,"
    " upright, without metadata",
    response_class=Response,
    responses=_binary_doc("the thumbnail", (images.THUMBNAIL_TYPE,)),
)
async def read_thumbnail(
    incident_id: uuid.UUID,
    photo_id: uuid.UUID,
    session: SessionDep,
    principal: Reader,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """404 as for the photo itself."""
    photo = await service.get_photo(
        session=session, incident_id=incident_id, photo_id=photo_id, scope=principal.scope
    )
    etag = _etag(photo.sha256, f"-t{images.THUMBNAIL_PX}")
    if none_match(if_none_match, etag):
        return _not_modified(etag)
    data = await service.thumbnail(session=session, photo=photo)
    return Response(
        data,
        media_type=images.THUMBNAIL_TYPE,
        headers={"ETag": etag, "Cache-Control": CACHE_CONTROL},
    )


@router.delete(
    "/incidents/{incident_id:uuid}/photos/{photo_id:uuid}",
    status_code=204,
    summary="Remove a photo (recorded in the audit log)",
    responses={
        403: WRITE_PROBLEMS[403],
        404: problem_response(404, "no such photo or incident, or one outside the key's area"),
    },
)
async def delete_photo(
    incident_id: uuid.UUID, photo_id: uuid.UUID, session: SessionDep, principal: Officer
) -> Response:
    """Officers: their own unit's incidents; admins: any in their area."""
    await service.delete_photo(
        session=session, incident_id=incident_id, photo_id=photo_id, principal=principal
    )
    return Response(status_code=204)
