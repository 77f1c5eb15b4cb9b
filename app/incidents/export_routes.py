"""GET /incidents/export (registered before /incidents/{id})."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["incidents"])
