"""Rating a finished consultation (and complaining, if the patient wishes): one short, large-print form.

Many of the clinic's patients are elderly and on a phone, so the form is five big choices, a box to tick for a
complaint and one text field; after sending, the page thanks them and shows what was sent. The same service as
the API takes it (`qa_audit.feedback`), so a complaint or a low rating reaches the QA audit's sample either way.
The complaint text is PHI: shown back to its author, never logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from qa_audit import feedback as service
from qa_audit.feedback_api import patient_viewer
from qa_audit.feedback_schemas import COMPLAINT_MAX_CHARS
from qa_audit.services import policy_from
from server import keys
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound
from server.people.models import Physician
from server.scheduling import queries
from web.i18n import N_
from web.pages import page_handler, read_form
from web.patient_pages.forms import Message, clean_text
from web.patient_pages.own_consultation import load_own, patient_and_consultation_id
from web.patient_pages.rendering import not_found, render_page

RATINGS = (5, 4, 3, 2, 1)  # best first: the choice most patients make is the first they read
RATING_TEXT = {5: N_("Excellent"), 4: N_("Good"), 3: N_("Fair"), 2: N_("Poor"), 1: N_("Very poor")}


@dataclass
class FeedbackForm:
    """What the patient sent, read leniently: the values for the service, what was typed, what is wrong."""

    rating: int | None = None
    wants_complaint: bool = False
    complaint: str = ""
    errors: dict[str, Message] = field(default_factory=dict)


def read_feedback(form: Mapping[str, str]) -> FeedbackForm:
    """The rating (one of five choices) and the complaint. Typed complaint text counts as a complaint even if the
    box was not ticked: what the patient wrote there is what they want the clinic to read."""
    raw_rating = form.get("rating", "").strip()
    rating = int(raw_rating) if raw_rating in {str(value) for value in RATINGS} else None
    complaint = clean_text(form.get("complaint", ""), limit=COMPLAINT_MAX_CHARS * 4)
    found = FeedbackForm(rating, form.get("wants_complaint") == "yes" or bool(complaint), complaint)
    if rating is None:
        found.errors["rating"] = (N_("Please choose how you rate the consultation."), {})
    if found.wants_complaint and not complaint:
        found.errors["complaint"] = (N_("Please write what went wrong, or untick the complaint box."), {})
    elif len(complaint) > COMPLAINT_MAX_CHARS:
        found.errors["complaint"] = (N_("Please shorten the complaint to %(limit)s characters (now %(count)s)."),
                                     {"limit": COMPLAINT_MAX_CHARS, "count": len(complaint)})
    return found


async def _page(request: web.Request, principal: Principal, consultation_id: uuid.UUID, *,
                form: FeedbackForm | None = None, refusal: str | None = None, status: int = 200) -> web.Response:
    async with read(request) as session:
        consultation = await load_own(session, request, principal, consultation_id)
        view = await queries.view(session, consultation.id)
        physician = await session.get(Physician, consultation.physician_id)
        given = await service.feedback_for(session, consultation.id)
    context: dict[str, Any] = {
        "c": consultation, "view": view, "physician": physician, "given": given,
        "finished": consultation.status in service.FINISHED, "form": form or FeedbackForm(),
        "ratings": RATINGS, "RATING_TEXT": RATING_TEXT, "limit": COMPLAINT_MAX_CHARS, "refusal": refusal,
        "sent": request.query.get("sent") == "1",
    }
    return await render_page(request, "feedback.html", context, status=status)


async def feedback_page(request: web.Request) -> web.Response:
    """The form; once feedback is given, the thanks and what was sent."""
    principal, consultation_id = await patient_and_consultation_id(request)
    return await _page(request, principal, consultation_id)


async def feedback_submit(request: web.Request) -> web.Response:
    """Send the feedback, then show what was sent; a problem shows the form again with the message at the field."""
    principal, consultation_id = await patient_and_consultation_id(request)
    here = f"/my/consultations/{consultation_id}/feedback"
    form = read_feedback(await read_form(request, back=here))
    if form.errors or form.rating is None:
        return await _page(request, principal, consultation_id, form=form, status=422)
    try:
        async with tx(request) as session:
            await service.give_feedback(
                session, consultation_id=consultation_id, viewer=patient_viewer(principal), rating=form.rating,
                complaint=form.complaint or None, ctx=audit_context(request),
                policy=policy_from(request.app[keys.settings]), now=utcnow())
    except service.FeedbackAlreadyGiven:
        raise web.HTTPSeeOther(here) from None  # sent from another tab: the page shows what was sent
    except service.ConsultationNotFinished as problem:
        return await _page(request, principal, consultation_id, form=form, refusal=problem.code,
                           status=problem.status)
    except NotFound:
        raise await not_found(request) from None
    raise web.HTTPSeeOther(f"{here}?sent=1")


def setup(app: web.Application) -> None:
    """Registers the feedback page (the form and its post)."""
    app.router.add_get("/my/consultations/{consultation_id}/feedback", page_handler(feedback_page),
                       name="my_consultation_feedback")
    app.router.add_post("/my/consultations/{consultation_id}/feedback", page_handler(feedback_submit))
