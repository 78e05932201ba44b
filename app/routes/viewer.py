"""Placeholder replaced by the card viewer (issue 6)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
