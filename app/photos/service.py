"""Incident photos: every query and write, and the files of BORDERWATCH_PHOTO_DIR.

A photo belongs to an incident and is seen by whoever may read that incident (the same scope
rule, `visible`, and the same 404 for an incident that is unknown, deleted or out of scope); it
is added or removed by whoever may correct the incident (officers: their own unit's). Every
write is an audit event on the incident (`photo_add`, `photo_delete`) in the same transaction.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.scope import Scope
from app.auth.service import Identity, record
from app.config import Settings
from app.errors import Conflict, Forbidden, NotFound, Unavailable
from app.incidents.filters import visible
from app.incidents.models import Incident
from app.incidents.service import require_live
from app.photos import images
from app.photos.models import IncidentPhoto

P = IncidentPhoto
# what answers say of a photo (never the content or the thumbnail)
META = (
    P.id,
    P.incident_id,
    P.media_type,
    P.size,
    P.width,
    P.height,
    P.sha256,
    P.caption,
    P.taken_at,
    P.exif_lon,
    P.exif_lat,
    P.created_at,
    P.created_by,
)


@dataclass(frozen=True)
class Photo:
    """What answers say of a photo (META)."""

    id: uuid.UUID
    incident_id: uuid.UUID
    media_type: str
    size: int
    width: int
    height: int
    sha256: str
    caption: str | None
    taken_at: datetime | None
    exif_lon: float | None
    exif_lat: float | None
    created_at: datetime
    created_by: str | None


def _photo(row: Any) -> Photo:
    return Photo(*row)


@dataclass(frozen=True)
class Stored:
    """The outcome of an upload: the photo and whether it is new."""

    photo: Photo
    created: bool


def _no_incident(incident_id: uuid.UUID) -> NotFound:
    return NotFound(f"no incident with id {incident_id}", id=str(incident_id))


def _no_photo(incident_id: uuid.UUID, photo_id: uuid.UUID) -> NotFound:
    return NotFound(
        f"incident {incident_id} has no photo with id {photo_id}",
        id=str(photo_id),
        incident_id=str(incident_id),
    )


async def _writable(
    session: AsyncSession, incident_id: uuid.UUID, principal: Identity, *, lock: bool
) -> None:
    """The incident exists, is not deleted and lies in the writer's scope (404 otherwise, as
    for a correction); an officer writes only their own unit's incidents (403). `lock`: hold
    it (FOR SHARE) until the transaction ends, so that it cannot be deleted meanwhile."""
    query = select(Incident.unit).where(
        Incident.id == incident_id, Incident.deleted_at.is_(None), visible(principal.scope)
    )
    if lock:
        query = query.with_for_update(read=True, of=Incident)
    found = (await session.execute(query)).one_or_none()
    if found is None:
        raise _no_incident(incident_id)
    if principal.role == "officer" and (not principal.unit or found[0] != principal.unit):
        raise Forbidden("officers may add or remove photos only of their own unit's incidents")


async def _existing(session: AsyncSession, photo_id: uuid.UUID) -> Photo | None:
    row = (await session.execute(select(*META).where(P.id == photo_id))).one_or_none()
    return None if row is None else _photo(row)


def _retry(existing: Photo, incident_id: uuid.UUID, sha256: str) -> Stored:
    """A second upload under an id already taken: the same photo again (a retry: 200) or a
    conflict (409)."""
    if existing.incident_id != incident_id:
        raise Conflict(
            f"photo id {existing.id} is already used by another incident; choose a new id",
            id=str(existing.id),
        )
    if existing.sha256 != sha256:
        raise Conflict(
            f"photo {existing.id} already exists with different content (SHA-256"
            f" {existing.sha256}); a photo never changes: upload it under a new id",
            id=str(existing.id),
            sha256=existing.sha256,
        )
    return Stored(existing, created=False)


async def upload(
    *,
    session: AsyncSession,
    settings: Settings,
    incident_id: uuid.UUID,
    photo_id: uuid.UUID,
    data: bytes,
    content_type: str | None,
    caption: str | None,
    principal: Identity,
) -> Stored:
    """Store a photo under `photo_id` (idempotent: the same id and content again is a retry).

    Nothing is written unless everything holds: the incident may be written by this principal,
    the content is a whole JPEG, PNG or WebP of the declared type within the limits. With
    BORDERWATCH_PHOTO_DIR the file is written (atomically) before the row commits: a row
    never names a missing file, and a failed commit leaves at most an unreferenced file that
    the next upload of the same content reuses."""
    declared = images.declared_type(content_type)
    sha256 = images.digest(data)
    await _writable(session, incident_id, principal, lock=False)
    existing = await _existing(session, photo_id)
    # no transaction stays open (nor a connection taken) while the image is decoded
    await session.commit()
    if existing is not None:
        return _retry(existing, incident_id, sha256)
    found = await asyncio.to_thread(
        images.inspect,
        data,
        declared=declared,
        max_pixels=settings.photo_max_pixels,
        zone=ZoneInfo(settings.time_zone),
    )
    folder = settings.photo_dir
    if folder is not None:
        await asyncio.to_thread(write_file, folder, sha256, data)
    await _writable(session, incident_id, principal, lock=True)
    values = {
        "id": photo_id,
        "incident_id": incident_id,
        "media_type": found.media_type,
        "size": len(data),
        "width": found.width,
        "height": found.height,
        "sha256": sha256,
        "content": None if folder is not None else data,
        "thumbnail": found.thumbnail,
        "exif_lon": found.lon,
        "exif_lat": found.lat,
        "taken_at": found.taken_at,
        "created_at": func.clock_timestamp(),  # the upload order, even within a transaction
        "created_by": principal.actor,
        "caption": caption or None,
    }
    statement = insert(P).values(values).on_conflict_do_nothing(index_elements=[P.id])
    row = (await session.execute(statement.returning(*META))).one_or_none()
    if row is None:  # the same id was stored meanwhile (a retry that overtook this one)
        existing = await _existing(session, photo_id)
        await session.rollback()
        if existing is None:  # and deleted again: extremely unlikely
            raise Conflict(f"photo {photo_id} could not be stored; retry")
        return _retry(existing, incident_id, sha256)
    photo = _photo(row)
    await record(
        session=session,
        actor=principal.actor,
        action="photo_add",
        entity_type="incident",
        entity_id=str(incident_id),
        after=audit_picture(photo),
    )
    await session.commit()
    return Stored(photo, created=True)


def audit_picture(photo: Photo) -> dict[str, Any]:
    """What the audit log keeps of a photo (not its content)."""
    return {
        "photo_id": str(photo.id),
        "media_type": photo.media_type,
        "bytes": photo.size,
        "width": photo.width,
        "height": photo.height,
        "sha256": photo.sha256,
        "caption": photo.caption,
    }


async def delete_photo(
    *, session: AsyncSession, incident_id: uuid.UUID, photo_id: uuid.UUID, principal: Identity
) -> None:
    """Remove a photo's row (its file in BORDERWATCH_PHOTO_DIR stays: docs/photos.md)."""
    await _writable(session, incident_id, principal, lock=True)
    statement = delete(P).where(P.id == photo_id, P.incident_id == incident_id).returning(*META)
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        await session.rollback()
        raise _no_photo(incident_id, photo_id)
    await record(
        session=session,
        actor=principal.actor,
        action="photo_delete",
        entity_type="incident",
        entity_id=str(incident_id),
        before=audit_picture(_photo(row)),
    )
    await session.commit()


async def list_photos(
    *, session: AsyncSession, incident_id: uuid.UUID, scope: Scope
) -> list[Photo]:
    """The photos of an incident the principal may read, oldest first."""
    await require_live(session, incident_id, scope)
    query = select(*META).where(P.incident_id == incident_id).order_by(P.created_at, P.id)
    return [_photo(row) for row in await session.execute(query)]


def _one_photo(incident_id: uuid.UUID, photo_id: uuid.UUID, scope: Scope, *columns: Any) -> Any:
    return (
        select(*columns)
        .select_from(P)
        .join(Incident, Incident.id == P.incident_id)
        .where(
            P.id == photo_id,
            P.incident_id == incident_id,
            Incident.deleted_at.is_(None),
            visible(scope),
        )
    )


async def get_photo(
    *, session: AsyncSession, incident_id: uuid.UUID, photo_id: uuid.UUID, scope: Scope
) -> Photo:
    """One photo (META): 404 when it, or its incident, is unknown, deleted or out of
    scope."""
    query = _one_photo(incident_id, photo_id, scope, *META)
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise _no_photo(incident_id, photo_id)
    return _photo(row)


async def content(*, session: AsyncSession, settings: Settings, photo: Photo) -> bytes:
    """The bytes of a photo read with get_photo: from the row, or from its file."""
    stored = (await session.execute(select(P.content).where(P.id == photo.id))).scalar()
    await session.commit()  # the connection goes back before a file is read
    if stored is not None:
        return bytes(stored)
    if settings.photo_dir is None:
        raise Unavailable(
            f"photo {photo.id} is kept as a file, and BORDERWATCH_PHOTO_DIR is not set in this"
            " process; set it to the folder the photos were written to"
        )
    try:
        return await asyncio.to_thread(read_file, settings.photo_dir, photo.sha256)
    except OSError as exc:
        raise Unavailable(
            f"the file of photo {photo.id} cannot be read from BORDERWATCH_PHOTO_DIR"
            f" ({type(exc).__name__}); check that the folder is mounted and complete"
        ) from exc


async def thumbnail(*, session: AsyncSession, photo: Photo) -> bytes:
    """The thumbnail of a photo read with get_photo."""
    row = (await session.execute(select(P.thumbnail).where(P.id == photo.id))).one_or_none()
    if row is None:  # deleted in between
        raise _no_photo(photo.incident_id, photo.id)
    return bytes(row[0])


# ---------------------------------------------------------------------------------------------
# BORDERWATCH_PHOTO_DIR: content-addressed files


def file_path(folder: Path, sha256: str) -> Path:
    """Where the content with this SHA-256 is kept: <folder>/<first two hex digits>/<sha256>."""
    return folder / sha256[:2] / sha256


def write_file(folder: Path, sha256: str, data: bytes) -> None:
    """Write the content under its SHA-256, atomically (a temporary file in the same folder,
    flushed to disk, then renamed over the name): a reader sees the whole file or none. The
    same content already there is left as it is."""
    target = file_path(folder, sha256)
    if target.is_file() and target.stat().st_size == len(data):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{sha256[:8]}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def read_file(folder: Path, sha256: str) -> bytes:
    """The content with this SHA-256 from the folder."""
    return file_path(folder, sha256).read_bytes()
