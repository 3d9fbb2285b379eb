"""Images and thumbnails: only files recorded in the database, under the output folder."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
