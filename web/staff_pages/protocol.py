"""The physician's protocol page: the form (autosaved by protocol.js through the API), signing with the
signed-in session, amendments, and the signed versions with their PDFs.

Without JavaScript the form still works: "Save" posts it, "Sign" saves what is on the screen and signs it in
the same request, so what the physician sees is what is signed.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import ValidationError

from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import Principal, audit_context
from server.http.problems import NotFound, ProblemError
from server.people.models import Physician
from server.records import api as records_api
from server.records import rules, services, signing
from server.records.content import ProtocolContent, loaded
from server.records.models import Protocol
from server.scheduling import queries
from server.scheduling.models import ConsultationKind
from server.scheduling.services import Viewer
from web.i18n import N_
from web.pages import PageAnswer, page_user, read_form, render
from web.staff_pages.common import not_found, path_id

_OTHER_WINDOW = N_("The draft was changed in another window. Reload the page to see it before saving.")
_PRIMARY_RULE = N_("A primary consultation cannot establish a diagnosis or prescribe. Recommend an in-person visit "
                   "instead.")
MESSAGES = {
    "draft_outdated": _OTHER_WINDOW, "precondition_required": _OTHER_WINDOW,
    "protocol_not_open": N_("The protocol can be written once the call has started."),
    "consultation_not_completed": N_("The protocol is signed after the consultation has ended."),
    "amendment_required": N_("The protocol is signed. To change it, open an amendment and say why."),
    "amendment_open": N_("An amendment is already open below."),
    "protocol_incomplete": N_("Fill in what is marked before signing."),
    rules.NO_DIAGNOSIS: _PRIMARY_RULE, rules.NO_PRESCRIPTION: _PRIMARY_RULE,
}
GENERIC = N_("The protocol could not be saved. Reload the page and try again.")
LEVELS = {"server_session": N_("Signed in the physician's session (clinic seal)"),
          "enhanced_unqualified": N_("Enhanced e-signature"), "enhanced_qualified": N_("Qualified e-signature")}
FIELD_NAMES = {"complaints": N_("Complaints"), "assessment": N_("Assessment"), "diagnosis.icd10": N_("ICD-10 code"),
               "diagnosis.text": N_("Diagnosis")}
BLANK_PRESCRIPTIONS = 2  # empty rows offered below the filled ones
PRESCRIPTION_FIELDS = ("drug", "dose", "route", "frequency", "duration", "notes")


async def _author(request: web.Request) -> tuple[Principal, Viewer]:
    principal = await page_user(request, roles=[Role.physician])
    return principal, await records_api.viewer_of(request, principal)


async def protocol_response(request: web.Request, *, error: str | None = None, form: ProtocolContent | None = None,
                            problems: list[rules.FieldProblem] | None = None, status: int = 200) -> web.Response:
    """The page; `form` re-shows what was posted when it was refused, so nothing typed is lost."""
    principal, viewer = await _author(request)
    consultation_id = await path_id(request, "consultation_id")
    try:
        async with tx(request) as db:
            view = await services.read_protocol(db, consultation_id=consultation_id, viewer=viewer,
                                                ctx=audit_context(request, principal), now=utcnow())
            if view.consultation.physician_id != viewer.physician_id:
                raise NotFound()
            item = await queries.view(db, view.consultation.id)
            physician = await db.get(Physician, view.consultation.physician_id)
    except NotFound:
        raise await not_found(request) from None
    c, protocol = view.consultation, view.protocol
    content = form or view.draft or _starting_content(item)
    repeat = c.kind is ConsultationKind.repeat
    signed = bool(view.versions)
    problems = problems if problems is not None else rules.signing_problems(c.kind, rules.normalised(content))
    return await render(request, "staff/protocol.html", {
        "c": c, "item": item, "zone": ZoneInfo(physician.time_zone if physician else "UTC"),
        "content": content, "repeat": repeat, "protocol": protocol, "versions": view.versions,
        "has_draft": view.draft is not None or not signed,
        "version": protocol.revision if protocol is not None and protocol.draft is not None else "",
        "amendment_reason": protocol.draft_reason if protocol is not None else None,
        "may_draft": rules.may_draft(c.status), "may_sign": rules.may_sign(c.status),
        "problems": problems, "field_errors": {p.field: p.message for p in problems},
        "prescriptions": [*content.prescriptions, *[None] * BLANK_PRESCRIPTIONS] if repeat else [],
        "prescription_fields": PRESCRIPTION_FIELDS, "field_names": FIELD_NAMES, "levels": LEVELS, "error": error,
        "api_draft": records_api.BASE.format(consultation_id=c.id) + "/draft"}, status=status)


def _starting_content(item: queries.ConsultationView) -> ProtocolContent:
    """A first draft starts from what the patient already said when booking (never asked twice), and for a
    repeat consultation from the condition it follows up."""
    c = item.consultation
    diagnosis = None
    if c.kind is ConsultationKind.repeat:
        diagnosis = {"icd10": item.condition.icd10 or "", "text": item.condition.name_ru}
    return loaded({"complaints": c.complaint, "diagnosis": diagnosis})


async def protocol_page(request: web.Request) -> web.Response:
    """The protocol of the consultation in the path, for its own physician (anyone else: the 404 page)."""
    return await protocol_response(request)


def _content(form: dict[str, str]) -> ProtocolContent:
    """The posted form as protocol fields. Diagnosis and prescriptions are read whenever they are posted, so
    the server (not the page) refuses them for a primary consultation."""
    data: dict[str, Any] = {name: form.get(name, "") for name in
                            ("complaints", "anamnesis", "reported_and_shown", "assessment", "follow_up")}
    data["recommendations"] = {"in_person_visit": form.get("in_person_visit") == "on",
                               "tests": form.get("tests") == "on", "tests_detail": form.get("tests_detail", ""),
                               "text": form.get("recommendations", "")}
    if "diagnosis-icd10" in form or "diagnosis-text" in form:
        data["diagnosis"] = {"icd10": form.get("diagnosis-icd10", ""), "text": form.get("diagnosis-text", "")}
    rows = sorted({int(key.split("-")[1]) for key in form if key.startswith("rx-") and key.split("-")[1].isdigit()})
    prescriptions = [{name: form.get(f"rx-{row}-{name}", "") for name in PRESCRIPTION_FIELDS} for row in rows]
    data["prescriptions"] = [p for p in prescriptions if any(p.values())]
    return ProtocolContent.model_validate(data)


async def protocol_submit(request: web.Request) -> web.Response:
    """Save the draft; with `action=sign`, then sign it with the physician's session."""
    principal, viewer = await _author(request)
    consultation_id = await path_id(request, "consultation_id")
    here = f"/clinic/consultations/{consultation_id}/protocol"
    form = await read_form(request, back=here)
    try:
        content = _content(form)
    except ValidationError:
        raise PageAnswer(await protocol_response(request, error=GENERIC, status=422)) from None
    version = form.get("version", "")
    ctx = audit_context(request, principal)
    try:
        async with tx(request) as db:
            saved = await services.save_draft(db, consultation_id=consultation_id, viewer=viewer, content=content,
                                              precondition=int(version) if version.isdigit() else None, ctx=ctx,
                                              now=utcnow())
        if not isinstance(saved, Protocol):
            raise saved
        if form.get("action") == "sign":
            await _sign(request, principal, viewer, consultation_id, language=form.get("language", "ru"))
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        problems = [rules.FieldProblem(e.field, e.type, e.message) for e in problem.errors or []]
        raise PageAnswer(await protocol_response(request, error=MESSAGES.get(problem.code, GENERIC), form=content,
                                                 problems=problems or None, status=problem.status)) from None
    raise web.HTTPSeeOther(here + ("?signed=1" if form.get("action") == "sign" else "?saved=1"))


async def _sign(request: web.Request, principal: Principal, viewer: Viewer, consultation_id: Any, *,
                language: str) -> None:
    setup, ctx = request.app[keys.consent], audit_context(request, principal)
    async with tx(request) as db:
        document = await signing.prepare(db, consultation_id=consultation_id, viewer=viewer,
                                         language=language if language in ("ru", "en") else "ru", setup=setup,
                                         ctx=ctx, now=utcnow())
        binding = signing.SessionBinding(principal.session_id, records_api.token_id(request), ctx.ip_hash)
        await signing.sign(db, consultation_id=consultation_id, viewer=viewer, document_id=document.id,
                           signature=None, binding=binding, setup=setup, ctx=ctx, now=utcnow())


async def amend_submit(request: web.Request) -> web.Response:
    """Open an amendment of the signed protocol, with the reason the physician gives."""
    principal, viewer = await _author(request)
    consultation_id = await path_id(request, "consultation_id")
    here = f"/clinic/consultations/{consultation_id}/protocol"
    form = await read_form(request, back=here)
    reason = form.get("reason", "").strip()
    if len(reason) < 3:
        raise PageAnswer(await protocol_response(request, error=N_("Say why the protocol is amended."), status=422))
    try:
        async with tx(request) as db:
            await services.open_amendment(db, consultation_id=consultation_id, viewer=viewer, reason=reason[:1000],
                                          ctx=audit_context(request, principal), now=utcnow())
    except NotFound:
        raise await not_found(request) from None
    except ProblemError as problem:
        raise PageAnswer(await protocol_response(request, error=MESSAGES.get(problem.code, GENERIC),
                                                 status=problem.status)) from None
    raise web.HTTPSeeOther(here)
