"""The patient's consents: what the clinic asks and where each stands, reading and signing a document, withdrawing.

Signing is the API's, step for step: the document is prepared in the page's language, a code is sent after the
transaction that made it, a refused code is committed (it counted as a try) before the page says why, and the
physicians' open waiting rooms are told. Every step is a plain form, so it works without scripts; `next` brings
the patient back to where they came from (the waiting room), and only to a path of this site.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from consent import delivery, rules, services, signing, templates
from consent.models import ConsentPurpose, OtpChannel
from consent.problems import AlreadySigned, AlreadyWithdrawn, CodeRefused, SignatureRefused
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from server.people import services as people
from web.consent_pages import status
from web.consent_pages.rendering import (
    actor_of,
    client_of,
    link,
    not_found,
    notify_waiting_rooms,
    page_locale,
    parse_uuid,
    render_page,
)
from web.consent_pages.texts import SIGN_ERRORS
from web.pages import page_user, read_form, read_upload_form, safe_next

PATIENTS = frozenset({Role.patient})
HOME = "/my/consents"
CHANNELS = tuple(channel.value for channel in OtpChannel)
CODE = re.compile(r"^[0-9]{6}$")


def _next(value: str | None) -> str:
    """Where "Continue" leads: the page the patient came from (a path of this site), else their consents."""
    return safe_next(value) if value else HOME


async def _patient(request: web.Request) -> tuple[Principal, uuid.UUID]:
    principal = await page_user(request, roles=PATIENTS)
    if principal.patient_id is None:  # a patient account always has its record; be safe anyway
        raise await not_found(request, back="/")
    return principal, principal.patient_id


async def _purpose(request: web.Request) -> ConsentPurpose:
    """The purpose in the path, if the clinic asks for it (recording is not asked where nothing is recorded)."""
    try:
        purpose = ConsentPurpose(request.match_info["purpose"])
    except ValueError:
        raise await not_found(request) from None
    if purpose not in request.app[keys.consent].policy.asked_purposes():
        raise await not_found(request)
    return purpose


# --- my consents -------------------------------------------------------------------------------------------------


async def my_consents_page(request: web.Request) -> web.Response:
    """Each purpose the clinic asks for with its status in plain words, and every consent signed."""
    _, patient_id = await _patient(request)
    setup = request.app[keys.consent]
    async with read(request) as session:
        found = await status.overview(session, patient_id=patient_id, policy=setup.policy, now=utcnow())
    withdrawn = request.query.get("withdrawn")
    return await render_page(request, "my_consents.html", {
        "overview": found, "recording_required": setup.policy.recording_required,
        "withdrawn": withdrawn if withdrawn in {p.value for p in ConsentPurpose} else None})


# --- reading and signing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignState:
    """Where the signing of one document stands, as the page shows it again after each step."""

    target: str  # `next`
    sent: str | None = None  # the channel a code was sent by: the code field is shown
    error: str | None = None  # a key of SIGN_ERRORS
    attempts_left: int | None = None
    signature_error: tuple[str, str] | None = None  # the verifier's code and its message


async def _sign_page(request: web.Request, purpose: ConsentPurpose, state: SignState, *,
                     status_code: int = 200) -> web.Response:
    principal, patient_id = await _patient(request)
    setup = request.app[keys.consent]
    locale, now = page_locale(request, principal), utcnow()
    async with tx(request) as session:  # preparing writes the document (once a day; a reload reuses it)
        found = await status.overview(session, patient_id=patient_id, policy=setup.policy, now=now)
        row = next(row for row in found.rows if row.purpose is purpose)
        profile = await people.profile(session, user_id=principal.user_id)
        document = None
        if row.template is not None and row.valid is None:
            document = await signing.prepare(session, patient_id=patient_id, purpose=purpose, language=locale,
                                             actor=actor_of(principal), ctx=audit_context(request), setup=setup,
                                             now=now)
    phone = profile.patient.phone if profile.patient else None
    context: dict[str, Any] = {
        "purpose": purpose, "row": row, "document": document, "state": state,
        "text": row.template.text(locale) if row.template else None,
        "destinations": {"email": rules.mask_email(profile.user.email) if profile.user.email else None,
                         "sms": rules.mask_phone(phone) if phone else None},
        "minutes": int(setup.otp_ttl.total_seconds() // 60), "certificates": setup.verifier is not None,
        "remaining": [r for r in found.needed if r.purpose is not purpose]}
    return await render_page(request, "sign.html", context, status=status_code)


async def sign_page(request: web.Request) -> web.Response:
    """The document to read, in full, with its PDF and hash; then a code to sign it (or one's own certificate)."""
    purpose = await _purpose(request)
    sent = request.query.get("sent")
    return await _sign_page(request, purpose, SignState(_next(request.query.get("next")),
                                                        sent=sent if sent in CHANNELS else None))


def _error(problem: ProblemError) -> str:
    return problem.code if problem.code in SIGN_ERRORS else "error"


async def send_code_submit(request: web.Request) -> web.Response:
    """Send a one-time code for the document shown, by e-mail or SMS; then the page asks for it."""
    principal, _ = await _patient(request)
    purpose = await _purpose(request)
    here = f"{HOME}/{purpose.value}"
    form = await read_form(request, back=here)
    target = _next(form.get("next"))
    document_id = parse_uuid(form.get("document_id"))
    channel = form.get("channel", "")
    channel = channel if channel in CHANNELS else OtpChannel.email.value
    if document_id is None:
        raise await not_found(request)
    setup = request.app[keys.consent]
    try:
        async with tx(request) as session:
            sending = await signing.request_code(session, document_id=document_id, channel=OtpChannel(channel),
                                                 actor=actor_of(principal), setup=setup, now=utcnow())
        await delivery.send_code(setup, sending, language=page_locale(request, principal),
                                 sessions=request.app[keys.sessions])
    except NotFound:
        raise await not_found(request) from None
    except AlreadySigned:
        raise web.HTTPSeeOther(link(here, next=target)) from None
    except ProblemError as problem:
        return await _sign_page(request, purpose, SignState(target, error=_error(problem)),
                                status_code=problem.status)
    raise web.HTTPSeeOther(link(here, next=target, sent=channel) + "#code")


async def sign_code_submit(request: web.Request) -> web.Response:
    """Sign with the code: a refused code is committed (it counted as a try), then the page says why."""
    principal, _ = await _patient(request)
    purpose = await _purpose(request)
    here = f"{HOME}/{purpose.value}"
    form = await read_form(request, back=here)
    target = _next(form.get("next"))
    sent = form.get("sent", "")
    sent = sent if sent in CHANNELS else OtpChannel.email.value
    document_id = parse_uuid(form.get("document_id"))
    if document_id is None:
        raise await not_found(request)
    code = re.sub(r"\s", "", form.get("code", ""))
    if not CODE.match(code):  # not a try: the service never sees it, as the API's schema refuses it
        return await _sign_page(request, purpose, SignState(target, sent=sent, error="code_format"), status_code=422)
    try:
        async with tx(request) as session:
            result = await signing.sign_with_code(session, document_id=document_id, code=code,
                                                  actor=actor_of(principal), client=client_of(request),
                                                  ctx=audit_context(request), setup=request.app[keys.consent],
                                                  now=utcnow())
    except NotFound:
        raise await not_found(request) from None
    except AlreadySigned:
        raise web.HTTPSeeOther(link(here, next=target)) from None
    except ProblemError as problem:
        return await _sign_page(request, purpose, SignState(target, sent=sent, error=_error(problem)),
                                status_code=problem.status)
    if isinstance(result, CodeRefused):
        left = result.extra.get("attempts_left")
        error = "otp_wrong_last" if result.code == "otp_wrong" and left == 0 else _error(result)
        return await _sign_page(request, purpose, SignState(target, sent=sent, error=error, attempts_left=left),
                                status_code=result.status)
    await notify_waiting_rooms(request, result.patient_id, "consent_signed")
    raise web.HTTPSeeOther(link(f"{HOME}/signed/{result.id}", next=target))


async def sign_certificate_submit(request: web.Request) -> web.Response:
    """Sign with one's own certificate: a detached CMS signature of the PDF, uploaded as a file."""
    principal, _ = await _patient(request)
    purpose = await _purpose(request)
    setup = request.app[keys.consent]
    if setup.verifier is None:
        raise await not_found(request)
    here = f"{HOME}/{purpose.value}"
    upload = await read_upload_form(request, file_field="signature", limit=setup.signature_max_bytes, back=here)
    target = _next(upload.fields.get("next"))
    document_id = parse_uuid(upload.fields.get("document_id"))
    if document_id is None:
        raise await not_found(request)
    if upload.too_large or upload.data is None:
        error = "file_too_large" if upload.too_large else "no_file"
        return await _sign_page(request, purpose, SignState(target, error=error),
                                status_code=413 if upload.too_large else 422)
    try:
        async with tx(request) as session:
            consent = await signing.sign_with_certificate(session, document_id=document_id, signature=upload.data,
                                                          actor=actor_of(principal), client=client_of(request),
                                                          ctx=audit_context(request), setup=setup, now=utcnow())
    except NotFound:
        raise await not_found(request) from None
    except AlreadySigned:
        raise web.HTTPSeeOther(link(here, next=target)) from None
    except SignatureRefused as refused:
        state = SignState(target, signature_error=(refused.code, refused.detail or ""))
        return await _sign_page(request, purpose, state, status_code=refused.status)
    except ProblemError as problem:
        return await _sign_page(request, purpose, SignState(target, error=_error(problem)), status_code=problem.status)
    await notify_waiting_rooms(request, consent.patient_id, "consent_signed")
    raise web.HTTPSeeOther(link(f"{HOME}/signed/{consent.id}", next=target))


async def signed_page(request: web.Request) -> web.Response:
    """Done: the signed PDF to keep, what is still to sign, and the way back."""
    principal, patient_id = await _patient(request)
    consent_id = parse_uuid(request.match_info["consent_id"])
    if consent_id is None:
        raise await not_found(request)
    setup = request.app[keys.consent]
    try:
        async with read(request) as session:
            consent = await services.load(session, consent_id, actor_of(principal))
            template = await templates.get_template(session, consent.template_id)
            found = await status.overview(session, patient_id=patient_id, policy=setup.policy, now=utcnow())
    except NotFound:
        raise await not_found(request) from None
    return await render_page(request, "signed.html", {
        "consent": consent, "title": template.text(consent.language)[0], "target": _next(request.query.get("next")),
        "remaining": found.needed})


# --- withdrawing -------------------------------------------------------------------------------------------------


async def withdraw_page(request: web.Request) -> web.Response:
    """The second click: what withdrawing this consent means, before the patient confirms it."""
    principal, _ = await _patient(request)
    consent_id = parse_uuid(request.match_info["consent_id"])
    if consent_id is None:
        raise await not_found(request)
    try:
        async with read(request) as session:
            consent = await services.load(session, consent_id, actor_of(principal))
            template = await templates.get_template(session, consent.template_id)
    except NotFound:
        raise await not_found(request) from None
    if consent.withdrawn_at is not None:
        raise web.HTTPFound(HOME)
    return await render_page(request, "withdraw.html", {
        "consent": consent, "title": template.text(consent.language)[0],
        "recording_required": request.app[keys.consent].policy.recording_required})


async def withdraw_submit(request: web.Request) -> web.Response:
    """Withdraw; a recording in progress stops (the event), and the physicians' waiting rooms are told."""
    principal, _ = await _patient(request)
    consent_id = parse_uuid(request.match_info["consent_id"])
    if consent_id is None:
        raise await not_found(request)
    await read_form(request, back=f"{HOME}/signed/{consent_id}/withdraw")
    try:
        async with tx(request) as session:
            consent, event = await services.withdraw(session, consent_id=consent_id, actor=actor_of(principal),
                                                     ctx=audit_context(request), now=utcnow())
    except NotFound:
        raise await not_found(request) from None
    except AlreadyWithdrawn:
        raise web.HTTPSeeOther(HOME) from None
    await request.app[keys.consent_withdrawals].publish(event)
    await notify_waiting_rooms(request, consent.patient_id, "consent_withdrawn")
    raise web.HTTPSeeOther(link(HOME, withdrawn=consent.purpose.value))
