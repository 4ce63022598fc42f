"""The admin's list of physicians: the way into each one's working hours and day figures."""

from __future__ import annotations

from aiohttp import web

from server.auth.models import Role
from server.http.context import read
from server.people import services as people
from web.pages import page_user, render


async def schedules_page(request: web.Request) -> web.Response:
    """Every physician with links to their hours and figures, for admins."""
    await page_user(request, roles=[Role.admin])
    async with read(request) as db:
        physicians = await people.list_physicians(db)
    return await render(request, "staff/schedules.html", {"physicians": physicians})

