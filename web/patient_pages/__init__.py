"""Patients' pages: finding a slot, screening, booking, my consultations, the waiting room.

Thin handlers over the scheduling services, like the API's. Every refusal of the domain (a `ProblemError`)
comes back as the same form, with a plain message next to the field or at the top; a screening stop comes
back as the emergency page or the in-person page (422), never as a problem document. Each step of booking
is a GET with query parameters, so it can be bookmarked and works without scripts.

The handlers are `booking`, `consultations` and `waiting_room`; below them `own_consultation` (reaching the
patient's consultation), `rendering` (templates and the pages every handler may answer with), `slots`,
`catalogue`, `forms` (reading what was sent), `formatting` and `texts`. Imports point down only.
"""

from __future__ import annotations

from aiohttp import web

from web.pages import page_handler
from web.patient_pages import feedback
from web.patient_pages.booking import book_page, book_submit, screening_page
from web.patient_pages.consultations import (
    cancel_submit,
    consultation_page,
    consultations_page,
    reschedule_page,
    reschedule_submit,
)
from web.patient_pages.waiting_room import check_in_submit, waiting_room_page


def setup(app: web.Application) -> None:
    """Registers the patient pages."""
    app.router.add_get("/book", page_handler(book_page), name="book")
    app.router.add_post("/book", page_handler(book_submit))
    app.router.add_get("/book/screening", page_handler(screening_page), name="book_screening")
    app.router.add_get("/my/consultations", page_handler(consultations_page), name="my_consultations")
    app.router.add_get("/my/consultations/{consultation_id}", page_handler(consultation_page),
                       name="my_consultation")
    app.router.add_post("/my/consultations/{consultation_id}/cancel", page_handler(cancel_submit))
    app.router.add_get("/my/consultations/{consultation_id}/reschedule", page_handler(reschedule_page),
                       name="my_consultation_reschedule")
    app.router.add_post("/my/consultations/{consultation_id}/reschedule", page_handler(reschedule_submit))
    app.router.add_get("/my/consultations/{consultation_id}/waiting-room", page_handler(waiting_room_page),
                       name="my_waiting_room")
    app.router.add_post("/my/consultations/{consultation_id}/check-in", page_handler(check_in_submit))
    feedback.setup(app)
