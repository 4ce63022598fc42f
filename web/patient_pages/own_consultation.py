"""The patient's own consultation, as the consultation pages and the waiting room reach it.

The id comes from the path and the consultation through the domain's viewer check, so another patient's
consultation answers exactly as a missing one does (404). A change the patient makes is told to the physician's
open waiting-room pages, as the API does.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server import keys
from server.http.principal import Principal
from server.http.problems import NotFound
from server.scheduling import services
from server.scheduling.api import viewer_for
from server.scheduling.models import Consultation
from web.pages import page_user
from web.patient_pages.forms import parse_uuid
from web.patient_pages.rendering import PATIENTS, not_found


def consultation_id_of(request: web.Request) -> uuid.UUID | None:
    """The consultation id in the path; `None` for one that is not an id, which the pages answer with 404."""
    return parse_uuid(request.match_info["consultation_id"])


async def patient_and_consultation_id(request: web.Request) -> tuple[Principal, uuid.UUID]:
    """The signed-in patient and the consultation id in the path, as every action on one consultation starts;
    a path that is not an id gets the 404 page before anything is read."""
    principal = await page_user(request, roles=PATIENTS)
    consultation_id = consultation_id_of(request)
    if consultation_id is None:
        raise await not_found(request)
    return principal, consultation_id


async def load_own(session: AsyncSession, request: web.Request, principal: Principal,
                   consultation_id: uuid.UUID | None) -> Consultation:
    """The consultation if this patient may see it; otherwise the 404 page is raised."""
    if consultation_id is None:
        raise await not_found(request)
    try:
        return await services.load(session, consultation_id, await viewer_for(request, principal))
    except NotFound:
        raise await not_found(request) from None


def publish_to_physician(request: web.Request, physician_id: uuid.UUID, event: str,
                         consultation_id: uuid.UUID) -> None:
    """Tell the physician's open waiting-room pages, as the API does (ids and events only)."""
    request.app[keys.waiting_room].publish(physician_id, {"event": event, "consultation_id": str(consultation_id)})
