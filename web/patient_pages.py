"""Patients' pages: finding a slot, screening, booking, my consultations, the waiting room."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Registers the patient pages (filled in as they are built)."""
