"""Physicians' and admins' pages: schedules, the live waiting room, hours, figures, the catalogue."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Registers the staff pages (filled in as they are built)."""
