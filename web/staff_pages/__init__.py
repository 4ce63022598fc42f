"""Physicians' and admins' pages: schedules, the live waiting room, hours, figures, the catalogue.

Thin like the API: each handler finds who the page is for (`page_user`, the API's access rule), calls the
same scheduling services and renders; a domain refusal re-renders the page with a message saying what
to do. Times are shown in the physician's own time zone, in the page's language.

This module only wires the pages up; each area lives in its own module (the modules import `common`,
`texts` and `formatting`, never this one).
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from web.pages import PageHandler, page_handler
from web.staff_pages.booking import book_page, book_submit
from web.staff_pages.catalogue import catalogue_page, catalogue_submit
from web.staff_pages.consultation import consultation_page
from web.staff_pages.consultation_actions import admit_submit, cancel_submit, finish_submit, reschedule_submit
from web.staff_pages.diagnosis import diagnosis_submit
from web.staff_pages.formatting import FILTERS
from web.staff_pages.hours import availability_page, availability_submit, exception_remove, exception_submit
from web.staff_pages.invitations import invite_submit, revoke_submit
from web.staff_pages.physicians import schedules_page
from web.staff_pages.protocol import amend_submit, protocol_page, protocol_submit
from web.staff_pages.questionnaires import questionnaire_page, questionnaire_submit, questionnaires_page
from web.staff_pages.schedule import schedule_page
from web.staff_pages.stats import stats_page
from web.staff_pages.texts import DEVICE_PROBLEMS, KIND_NAMES, STATUS_NAMES
from web.staff_pages.waiting_room import waiting_room_list, waiting_room_page


def setup(app: web.Application) -> None:
    """Registers the staff pages and the template filters they format times and figures with."""
    env = aiohttp_jinja2.get_env(app)
    env.filters.update(FILTERS)
    env.globals.update(staff_kinds=KIND_NAMES, staff_statuses=STATUS_NAMES, device_problems=DEVICE_PROBLEMS)
    routes: list[tuple[str, str, PageHandler]] = [
        ("GET", "/clinic/schedule", schedule_page),
        ("GET", "/clinic/waiting-room", waiting_room_page),
        ("GET", "/clinic/waiting-room/list", waiting_room_list),
        ("GET", "/clinic/consultations/{consultation_id}", consultation_page),
        ("POST", "/clinic/consultations/{consultation_id}/admit", admit_submit),
        ("POST", "/clinic/consultations/{consultation_id}/finish", finish_submit),
        ("POST", "/clinic/consultations/{consultation_id}/cancel", cancel_submit),
        ("POST", "/clinic/consultations/{consultation_id}/reschedule", reschedule_submit),
        ("POST", "/clinic/consultations/{consultation_id}/diagnosis", diagnosis_submit),
        ("GET", "/clinic/consultations/{consultation_id}/protocol", protocol_page),
        ("POST", "/clinic/consultations/{consultation_id}/protocol", protocol_submit),
        ("POST", "/clinic/consultations/{consultation_id}/protocol/amend", amend_submit),
        ("POST", "/clinic/consultations/{consultation_id}/invitations", invite_submit),
        ("POST", "/clinic/consultations/{consultation_id}/invitations/{invitation_id}/revoke", revoke_submit),
        ("GET", "/clinic/schedules", schedules_page),
        ("GET", "/clinic/catalogue", catalogue_page),
        ("POST", "/clinic/catalogue", catalogue_submit),
        ("GET", "/clinic/questionnaires", questionnaires_page),
        ("GET", "/clinic/questionnaires/{code}", questionnaire_page),
        ("POST", "/clinic/questionnaires/{code}", questionnaire_submit),
        ("GET", "/clinic/book", book_page),
        ("POST", "/clinic/book", book_submit),
    ]
    for base in ("/clinic", "/clinic/physicians/{physician_id}"):  # one's own, and any for admins
        routes += [("GET", f"{base}/availability", availability_page),
                   ("POST", f"{base}/availability", availability_submit),
                   ("POST", f"{base}/availability/exceptions", exception_submit),
                   ("POST", f"{base}/availability/exceptions/{{exception_id}}/remove", exception_remove),
                   ("GET", f"{base}/stats", stats_page)]
    for method, path, handler in routes:
        app.router.add_route(method, path, page_handler(handler))
