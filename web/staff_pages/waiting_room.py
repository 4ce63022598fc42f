"""The physician's live waiting room: who has checked in, how long they have waited, and whether their consents
still hold (a patient may withdraw one while waiting; admission would then be refused).

The page's script swaps in the list fragment when the live stream says something changed; without scripts
the whole page is reloaded, so both render the same context.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from consent import services as consent
from server import keys
from server.db.base import utcnow
from server.http.context import tx
from server.scheduling import queries
from server.scheduling.api import audit_listing
from web.consent_pages import status as consent_status
from web.pages import render
from web.staff_pages.common import Desk, load_desk


async def _queue_context(request: web.Request, desk: Desk, *, audited: bool) -> dict[str, Any]:
    """`audited` for the page itself; its minute-by-minute refreshes show the same patients again."""
    policy = request.app[keys.consent].policy
    now = utcnow()
    async with tx(request) as db:
        items = await queries.waiting_room(db, physician_id=desk.physician.id)
        if audited:
            await audit_listing(db, request, items)
        gates = {patient_id: await consent.patient_gate(db, patient_id=patient_id, policy=policy, now=now)
                 for patient_id in dict.fromkeys(item.consultation.patient_id for item in items)}
    waited = {item.consultation.id: max(0, int((now - (item.consultation.checked_in_at or now)).total_seconds()
                                                // 60)) for item in items}
    consents = {item.consultation.id: consent_status.summarize(gates[item.consultation.patient_id], policy)
                for item in items}
    return {"items": items, "waited": waited, "consents": consents, "zone": desk.zone,
            "time_zone": desk.physician.time_zone, "updated_at": now}


async def queue_response(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    """The whole waiting-room page, with `error` when a change posted from it was refused."""
    desk = await load_desk(request)
    context = await _queue_context(request, desk, audited=True)
    return await render(request, "staff/waiting_room.html", {**context, "error": error}, status=status)


async def waiting_room_page(request: web.Request) -> web.Response:
    """The signed-in physician's waiting room."""
    return await queue_response(request)


async def waiting_room_list(request: web.Request) -> web.Response:
    """Only the list, for the page's script to swap in when the live stream says something changed."""
    desk = await load_desk(request)
    return await render(request, "staff/_queue.html", await _queue_context(request, desk, audited=False))
