"""Recording an in-person diagnosis from a consultation's page: what allows repeat teleconsultations."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import audit_context
from server.http.problems import NotFound, ProblemError
from server.scheduling import conditions, services
from server.scheduling.api import viewer_for
from web.pages import page_user, read_form
from web.staff_pages.common import STAFF, path_id


async def diagnosis_submit(request: web.Request) -> web.Response:
    """The physician of the consultation (or an admin) records that the patient was diagnosed in person here."""
    principal = await page_user(request, roles=STAFF)
    consultation_id = await path_id(request, "consultation_id")
    back = f"/clinic/consultations/{consultation_id}"
    form = await read_form(request, back=back)
    viewer = await viewer_for(request, principal)
    try:
        diagnosed_on = dt.date.fromisoformat(form.get("diagnosed_on", ""))
        if diagnosed_on > utcnow().date():
            raise ValueError("in the future")
        async with tx(request) as db:
            consultation = await services.load(db, consultation_id, viewer)
            await conditions.record_diagnosis(db, patient_id=consultation.patient_id,
                                              condition_code=form.get("condition_code", ""),
                                              diagnosed_on=diagnosed_on, ctx=audit_context(request), now=utcnow())
    except NotFound:
        raise web.HTTPNotFound() from None
    except (ValueError, ProblemError):
        raise web.HTTPSeeOther(f"{back}?diagnosis=invalid") from None
    raise web.HTTPSeeOther(f"{back}?diagnosis=recorded")
