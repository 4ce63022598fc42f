"""Consent pages: a patient's consents and signing them, paper consents for staff, consent texts for admins.

Thin handlers over the consent services, as the API's (`consent/api.py`) are, step for step. A refusal of the
domain shows the same page again with a plain message; another patient's document or consent is the 404 page,
exactly as a missing one. PDFs are downloaded from the API, which accepts the session cookie on GET.

The handlers are `patient`, `staff` and `admin`; below them `status` (what a patient holds, for these pages, the
check-in page and the staff queue), `rendering` and `texts`. Imports point down only; the patient and staff
pages import `status` and the template globals from here, never the other way round.
"""

from __future__ import annotations

import functools

import aiohttp_jinja2
from aiohttp import web

from server import keys
from web.consent_pages import admin, patient, staff
from web.consent_pages.rendering import GLOBALS, consent_date
from web.pages import PageHandler, page_handler

PURPOSE = "{purpose}"  # a purpose's name; anything else gets the 404 page from the handler


def setup(app: web.Application) -> None:
    """Registers the consent pages and the template globals the check-in and staff pages share."""
    env = aiohttp_jinja2.get_env(app)
    env.globals.update(GLOBALS)
    env.globals["consent_date"] = functools.partial(consent_date, zone=app[keys.consent].zone)
    routes: list[tuple[str, str, PageHandler]] = [
        ("GET", "/my/consents", patient.my_consents_page),
        ("GET", f"/my/consents/{PURPOSE}", patient.sign_page),
        ("POST", f"/my/consents/{PURPOSE}/code", patient.send_code_submit),
        ("POST", f"/my/consents/{PURPOSE}/sign", patient.sign_code_submit),
        ("POST", f"/my/consents/{PURPOSE}/certificate", patient.sign_certificate_submit),
        ("GET", "/my/consents/signed/{consent_id}", patient.signed_page),
        ("GET", "/my/consents/signed/{consent_id}/withdraw", patient.withdraw_page),
        ("POST", "/my/consents/signed/{consent_id}/withdraw", patient.withdraw_submit),
        ("POST", "/clinic/patients/{patient_id}/consent-documents", staff.prepare_submit),
        ("GET", "/clinic/consent-documents/{document_id}", staff.paper_page),
        ("POST", "/clinic/consent-documents/{document_id}/paper", staff.paper_submit),
        ("GET", "/clinic/consent-texts", admin.texts_page),
        ("POST", f"/clinic/consent-texts/{PURPOSE}/drafts", admin.draft_submit),
        ("GET", "/clinic/consent-texts/{template_id}", admin.text_page),
        ("POST", "/clinic/consent-texts/{template_id}", admin.save_submit),
        ("POST", "/clinic/consent-texts/{template_id}/publish", admin.publish_submit),
        ("GET", "/clinic/consent-texts/{template_id}/preview", admin.preview),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, page_handler(handler))
