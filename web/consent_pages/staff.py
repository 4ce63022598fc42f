"""A paper consent, for a patient who cannot sign online: staff print the document, the patient signs it by hand,
staff upload the scan and attest it.

The document is the same PDF a patient signs online (prepared for the patient, in their language), so its hash
is what the paper copy carries; the scan is checked by its first bytes (PDF, JPEG or PNG), never by the
browser's claim, and never read past the clinic's size limit.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import select

from consent import services, signing, templates
from consent.models import Consent, ConsentPurpose
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import audit_context
from server.http.problems import NotFound, ProblemError
from web import i18n
from web.consent_pages import status
from web.consent_pages.rendering import (
    actor_of,
    client_of,
    link,
    not_found,
    notify_waiting_rooms,
    parse_uuid,
    render_page,
)
from web.consent_pages.texts import STAFF_ERRORS
from web.pages import page_user, read_form, read_upload_form, safe_next

STAFF = (Role.physician, Role.admin)
NOTE_MAX = 500  # as the API's PaperQuery
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # kept in the sealed evidence: one line of plain text


def _back(value: str | None) -> str:
    """Where staff go back to (the consultation they came from): a path of this site, else the home page."""
    return safe_next(value) if value else "/"


def _code(problem: ProblemError) -> str:
    return problem.code if problem.code in STAFF_ERRORS else "error"


async def prepare_submit(request: web.Request) -> web.Response:
    """Prepare the patient's document to print (the current version, in the chosen language)."""
    principal = await page_user(request, roles=STAFF)
    patient_id = parse_uuid(request.match_info["patient_id"])
    form = await read_form(request, back="/")
    back = _back(form.get("back"))
    language = form.get("language", "")
    language = language if language in i18n.LOCALES else "ru"
    try:
        purpose = ConsentPurpose(form.get("purpose", ""))
    except ValueError:
        purpose = None
    if patient_id is None or purpose is None:
        raise await not_found(request, back=back)
    actor = actor_of(principal)
    try:
        async with tx(request) as session:
            if not await signing.may_act_for(session, actor, patient_id):
                raise NotFound()
            document = await signing.prepare(session, patient_id=patient_id, purpose=purpose, language=language,
                                             actor=actor, ctx=audit_context(request), setup=request.app[keys.consent],
                                             now=utcnow())
    except NotFound:
        raise await not_found(request, back=back) from None
    except ProblemError as problem:  # nothing published for the purpose
        return await render_page(request, "paper.html", {"document": None, "back": back, "error": _code(problem)},
                                 status=problem.status)
    raise web.HTTPSeeOther(link(f"/clinic/consent-documents/{document.id}", back=back))


async def _paper_page(request: web.Request, document_id: uuid.UUID | None, *, back: str, error: str | None = None,
                      note: str = "", status_code: int = 200) -> web.Response:
    principal = await page_user(request, roles=STAFF)
    if document_id is None:
        raise await not_found(request, back=back)
    actor = actor_of(principal)
    try:
        async with tx(request) as session:
            document = await signing.load_document(session, document_id, actor)
            template = await templates.get_template(session, document.template_id)
            who = await status.patient_name_and_locale(session, document.patient_id)
            consent = await session.scalar(select(Consent).where(Consent.document_id == document.id))
            if consent is not None:  # staff reading a patient's consent is in the patient's access log
                await services.audit_read(session, consent, actor=actor, ctx=audit_context(request), what="read",
                                          now=utcnow())
            else:
                await signing.audit_document_read(session, document, actor=actor, ctx=audit_context(request),
                                                  what="read", now=utcnow())
    except NotFound:
        raise await not_found(request, back=back) from None
    context: dict[str, Any] = {
        "document": document, "template": template, "title": template.text(document.language)[0],
        "patient_name": who[0] if who else "", "consent": consent, "back": back, "error": error, "note": note,
        "max_mb": max(1, request.app[keys.consent].scan_max_bytes // 1_048_576), "note_max": NOTE_MAX}
    return await render_page(request, "paper.html", context, status=status_code)


async def paper_page(request: web.Request) -> web.Response:
    """The document to print, and the form to upload its signed scan (or the consent, once attested)."""
    return await _paper_page(request, parse_uuid(request.match_info["document_id"]),
                             back=_back(request.query.get("back")))


async def paper_submit(request: web.Request) -> web.Response:
    """Attest the paper consent with its scan; the physicians' waiting rooms are told."""
    principal = await page_user(request, roles=STAFF)
    document_id = parse_uuid(request.match_info["document_id"])
    if document_id is None:
        raise await not_found(request)
    setup = request.app[keys.consent]
    upload = await read_upload_form(request, file_field="scan", limit=setup.scan_max_bytes,
                                    back=f"/clinic/consent-documents/{document_id}")
    back = _back(upload.fields.get("back"))
    note = " ".join(CONTROL.sub(" ", upload.fields.get("note", "")).split())
    error, code = None, 422
    media_type = signing.scan_media_type(upload.data) if upload.data else None
    if upload.too_large:
        error, code = "too_large", 413
    elif upload.data is None:
        error = "no_file"
    elif media_type is None:
        error, code = "unsupported_media_type", 415
    elif len(note) > NOTE_MAX:
        error = "note_too_long"
    if error is not None or upload.data is None or media_type is None:
        return await _paper_page(request, document_id, back=back, error=error or "no_file", note=note,
                                 status_code=code)
    try:
        async with tx(request) as session:
            consent = await signing.attest_paper(session, document_id=document_id, scan=upload.data,
                                                 media_type=media_type, note=note, actor=actor_of(principal),
                                                 client=client_of(request), ctx=audit_context(request), setup=setup,
                                                 now=utcnow())
    except NotFound:
        raise await not_found(request, back=back) from None
    except ProblemError as problem:
        return await _paper_page(request, document_id, back=back, error=_code(problem), note=note,
                                 status_code=problem.status)
    await notify_waiting_rooms(request, consent.patient_id, "consent_signed")
    raise web.HTTPSeeOther(link(f"/clinic/consent-documents/{document_id}", back=back))
