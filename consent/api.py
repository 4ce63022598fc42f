"""REST endpoints for consent: templates (admins), documents and signing (patients; paper via staff),
the patient's consents, withdrawal, verification and FHIR export."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from consent import delivery, fhir, rules, schemas, seal, services, signing, templates
from consent.models import Consent, ConsentDocument, ConsentPurpose, ConsentTemplate, OtpChannel
from consent.problems import CodeRefused, ConsentDamaged
from consent.setup import ConsentSetup
from server import keys
from server.audit import services as audit
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import path_uuid, read_upload
from server.http.principal import Principal, audit_context, authenticate
from server.http.problems import FieldError, NotFound, ProblemError, ValidationFailed
from server.http.responses import json_response
from server.http.routing import ApiRouter

router = ApiRouter("consents")
PDF = "application/pdf"
SIGNATURE_TYPES = ("application/pkcs7-signature", "application/octet-stream", "application/x-pem-file", "text/plain")
SCAN_TYPES = tuple(signing.SCAN_TYPES)


def actor_of(principal: Principal) -> signing.Actor:
    return signing.Actor(principal.user_id, principal.role, principal.patient_id)


def client_of(request: web.Request) -> signing.Client:
    return signing.Client(audit_context(request).ip_hash, request.headers.get("User-Agent"))


def template_out(t: ConsentTemplate) -> schemas.TemplateOut:
    return schemas.TemplateOut(id=t.id, purpose=t.purpose.value, version=t.version, status=t.status.value,
                               material=t.material, title_ru=t.title_ru, body_ru=t.body_ru, title_en=t.title_en,
                               body_en=t.body_en, sha256=t.sha256, created_at=t.created_at,
                               published_at=t.published_at)


def consent_out(c: Consent, *, minimum: dict[ConsentPurpose, int], policy: rules.GatePolicy) -> schemas.ConsentOut:
    facts = rules.ConsentFacts(c.purpose, c.template_version, c.level, c.signed_at, c.withdrawn_at)
    current = rules.consent_problem(facts, minimum_version=minimum.get(c.purpose, c.template_version + 1),
                                    policy=policy, now=utcnow()) is None
    return schemas.ConsentOut(id=c.id, patient_id=c.patient_id, document_id=c.document_id, purpose=c.purpose.value,
                              template_version=c.template_version, template_sha256=c.template_sha256,
                              document_sha256=c.document_sha256, language=c.language, level=c.level.value,
                              evidence=c.evidence, signed_at=c.signed_at, withdrawn_at=c.withdrawn_at,
                              status="inactive" if c.withdrawn_at else "active", current=current,
                              seal_key_id=c.seal_key_id, pdf_url=f"/api/v1/consents/{c.id}/pdf")


def _pdf(data: bytes, filename: str) -> web.Response:
    return web.Response(body=data, content_type=PDF, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


# --- Templates (admins draft, preview and publish; everyone signed in reads the published ones)

@router.route("GET", "/api/v1/consent-templates", summary="Consent texts (admins: drafts too)",
              query=schemas.TemplatesQuery, response=schemas.TemplateList)
async def list_templates(request: web.Request, query: schemas.TemplatesQuery) -> web.Response:
    principal = await authenticate(request)
    async with read(request) as session:
        items = await templates.list_templates(session, purpose=ConsentPurpose(query.purpose) if query.purpose
                                               else None, published_only=principal.role is not Role.admin)
    return json_response(schemas.TemplateList(items=[template_out(t) for t in items]))


@router.route("POST", "/api/v1/consent-templates", summary="Draft the next version of a consent text",
              body=schemas.TemplateIn, response=schemas.TemplateOut, status=201, roles=[Role.admin])
async def create_template(request: web.Request, body: schemas.TemplateIn) -> web.Response:
    async with tx(request) as session:
        template = await templates.create_draft(session, purpose=ConsentPurpose(body.purpose), title_ru=body.title_ru,
                                                body_ru=body.body_ru, title_en=body.title_en, body_en=body.body_en,
                                                ctx=audit_context(request), now=utcnow())
    return json_response(template_out(template), status=201)


@router.route("PUT", "/api/v1/consent-templates/{template_id}", summary="Edit a draft (published ones never change)",
              body=schemas.TemplateTextIn, response=schemas.TemplateOut, roles=[Role.admin], errors=(404, 409))
async def update_template(request: web.Request, body: schemas.TemplateTextIn) -> web.Response:
    async with tx(request) as session:
        template = await templates.update_draft(session, template_id=path_uuid(request, "template_id"),
                                                title_ru=body.title_ru, body_ru=body.body_ru, title_en=body.title_en,
                                                body_en=body.body_en, ctx=audit_context(request), now=utcnow())
    return json_response(template_out(template))


@router.route("POST", "/api/v1/consent-templates/{template_id}/publish", summary="Publish a draft",
              body=schemas.PublishIn, response=schemas.TemplateOut, roles=[Role.admin], errors=(404, 409))
async def publish_template(request: web.Request, body: schemas.PublishIn) -> web.Response:
    """Material: every consent to an older version must be signed again before the patient's next consultation."""
    async with tx(request) as session:
        template = await templates.publish(session, template_id=path_uuid(request, "template_id"),
                                           material=body.material, ctx=audit_context(request), now=utcnow())
    return json_response(template_out(template))


@router.route("GET", "/api/v1/consent-templates/{template_id}/preview", summary="The PDF a patient would sign",
              query=schemas.PreviewQuery, roles=[Role.admin], errors=(404,), produces=PDF)
async def preview_template(request: web.Request, query: schemas.PreviewQuery) -> web.Response:
    async with read(request) as session:
        template = await templates.get_template(session, path_uuid(request, "template_id"))
    data = await asyncio.to_thread(signing.render_preview, template, language=query.language,
                                   setup=request.app[keys.consent], now=utcnow())
    return _pdf(data, f"preview-{template.purpose.value}-v{template.version}-{query.language}.pdf")


# --- Documents and signing

async def document_out(session: AsyncSession, document: ConsentDocument) -> schemas.DocumentOut:
    template = await session.get(ConsentTemplate, document.template_id)
    assert template is not None  # noqa: S101  # a document's template is never deleted (RESTRICT)
    return schemas.DocumentOut(id=document.id, patient_id=document.patient_id, purpose=template.purpose.value,
                               template_version=template.version, language=document.language,
                               title=template.text(document.language)[0], sha256=document.sha256,
                               pdf_url=f"/api/v1/consent-documents/{document.id}/pdf", created_at=document.created_at)


@router.route("POST", "/api/v1/consent-documents", summary="Prepare the document to sign (the current version)",
              body=schemas.DocumentIn, response=schemas.DocumentOut, status=201,
              roles=[Role.patient, Role.physician, Role.admin], errors=(404, 409))
async def prepare_document(request: web.Request, body: schemas.DocumentIn) -> web.Response:
    """Renders the PDF with the patient's name and birth date. Staff name the patient (for a paper consent)."""
    principal = await authenticate(request)
    actor = actor_of(principal)
    patient_id = principal.patient_id if principal.role is Role.patient else body.patient_id
    if patient_id is None:
        raise ValidationFailed("staff prepare a document for a patient: patient_id is required", errors=[
            FieldError(field="patient_id", message="required when staff prepare a document", type="missing")])
    if principal.role is Role.patient and body.patient_id not in (None, patient_id):
        raise NotFound()
    async with tx(request) as session:
        if not await signing.may_act_for(session, actor, patient_id):
            raise NotFound()
        document = await signing.prepare(session, patient_id=patient_id, purpose=ConsentPurpose(body.purpose),
                                         language=body.language, actor=actor, ctx=audit_context(request),
                                         setup=request.app[keys.consent], now=utcnow())
        out = await document_out(session, document)
    return json_response(out, status=201)


@router.route("GET", "/api/v1/consent-documents/{document_id}/pdf", summary="The document to read before signing",
              roles=[Role.patient, Role.physician, Role.admin], errors=(404,), produces=PDF)
async def document_pdf(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    actor = actor_of(principal)
    async with tx(request) as session:
        document = await signing.load_document(session, path_uuid(request, "document_id"), actor)
        await signing.audit_document_read(session, document, actor=actor, ctx=audit_context(request),
                                          what="downloaded", now=utcnow())
    return _pdf(document.pdf, f"consent-{document.id}.pdf")


@router.route("POST", "/api/v1/consent-documents/{document_id}/code",
              summary="Send a one-time code that signs this document", body=schemas.CodeIn,
              response=schemas.CodeSentOut, status=202, roles=[Role.patient], errors=(404, 409, 429, 503))
async def send_code(request: web.Request, body: schemas.CodeIn) -> web.Response:
    """Six digits to the patient's e-mail or phone, valid 10 minutes, bound to the document's SHA-256."""
    principal = await authenticate(request)
    setup = request.app[keys.consent]
    async with tx(request) as session:
        sending = await signing.request_code(session, document_id=path_uuid(request, "document_id"),
                                             channel=OtpChannel(body.channel), actor=actor_of(principal),
                                             setup=setup, now=utcnow())
    await delivery.send_code(setup, sending, language=principal.locale, sessions=request.app[keys.sessions])
    otp = sending.otp
    return json_response(schemas.CodeSentOut(channel=otp.channel.value, destination=otp.destination_masked,
                                             expires_at=otp.expires_at, attempts=setup.otp_attempts), status=202)


@router.route("POST", "/api/v1/consent-documents/{document_id}/sign", summary="Sign with the one-time code",
              body=schemas.SignIn, response=schemas.ConsentOut, status=201, roles=[Role.patient],
              errors=(404, 409, 422))
async def sign_with_code(request: web.Request, body: schemas.SignIn) -> web.Response:
    """A simple e-signature. Wrong, expired and exhausted codes are refused (422 with `attempts_left`); a
    document already signed is 409 `already_signed`, one whose text the clinic replaced 409 `document_outdated`."""
    principal = await authenticate(request)
    async with tx(request) as session:
        result = await signing.sign_with_code(session, document_id=path_uuid(request, "document_id"), code=body.code,
                                              actor=actor_of(principal), client=client_of(request),
                                              ctx=audit_context(request), setup=request.app[keys.consent],
                                              now=utcnow())
    if isinstance(result, CodeRefused):
        raise result
    return await _signed(request, result)


@router.route("POST", "/api/v1/consent-documents/{document_id}/signature",
              summary="Sign with your own certificate: upload a detached CMS signature over the PDF",
              response=schemas.ConsentOut, status=201, roles=[Role.patient], errors=(404, 409),
              uploads=SIGNATURE_TYPES)
async def sign_with_certificate(request: web.Request) -> web.Response:
    """An enhanced e-signature: DER (`application/pkcs7-signature`) or PEM, as `openssl cms -sign -binary`
    makes it. Refusals name the reason: `digest_mismatch`, `untrusted`, `expired`, `revoked`, `key_usage`,
    `subject_mismatch`, `unsupported_algorithm`, ..."""
    principal = await authenticate(request)
    setup = request.app[keys.consent]
    data, _ = await read_upload(request, media_types=SIGNATURE_TYPES, limit=setup.signature_max_bytes)
    async with tx(request) as session:
        consent = await signing.sign_with_certificate(session, document_id=path_uuid(request, "document_id"),
                                                      signature=data, actor=actor_of(principal),
                                                      client=client_of(request), ctx=audit_context(request),
                                                      setup=setup, now=utcnow())
    return await _signed(request, consent)


@router.route("POST", "/api/v1/consent-documents/{document_id}/paper",
              summary="Staff: attest a paper consent signed in person, with its scan", query=schemas.PaperQuery,
              response=schemas.ConsentOut, status=201, roles=[Role.physician, Role.admin], errors=(404, 409),
              uploads=SCAN_TYPES)
async def attest_paper(request: web.Request, query: schemas.PaperQuery) -> web.Response:
    principal = await authenticate(request)
    setup = request.app[keys.consent]
    data, _ = await read_upload(request, media_types=SCAN_TYPES, limit=setup.scan_max_bytes)
    media_type = signing.scan_media_type(data)
    if media_type is None:
        raise ProblemError("The scan must be a PDF, JPEG or PNG file", status=415, code="unsupported_media_type",
                           title="Unsupported media type")
    async with tx(request) as session:
        consent = await signing.attest_paper(session, document_id=path_uuid(request, "document_id"), scan=data,
                                             media_type=media_type, note=query.note, actor=actor_of(principal),
                                             client=client_of(request), ctx=audit_context(request), setup=setup,
                                             now=utcnow())
    return await _signed(request, consent)


async def _signed(request: web.Request, consent: Consent) -> web.Response:
    async with read(request) as session:
        await services.announce(session, request.app[keys.waiting_room], patient_id=consent.patient_id,
                                event="consent_signed")
    setup = request.app[keys.consent]
    async with read(request) as session:
        minimum = await templates.minimum_versions(session)
    return json_response(consent_out(consent, minimum=minimum, policy=setup.policy), status=201)


# --- The patient's consents

async def _status(session: AsyncSession, patient_id: uuid.UUID, setup: ConsentSetup) -> schemas.ConsentStatusOut:
    now = utcnow()
    decision = await services.patient_gate(session, patient_id=patient_id, policy=setup.policy, now=now)
    minimum = await templates.minimum_versions(session)
    purposes = []
    for status in decision.statuses:
        try:
            current = await templates.current(session, status.purpose)
        except ProblemError:
            current = None
        purposes.append(schemas.PurposeStatusOut(
            purpose=status.purpose.value, required=status.required,
            problem=status.problem.value if status.problem else None,
            current_version=current.version if current else None, title_ru=current.title_ru if current else None,
            title_en=current.title_en if current else None))
    consents = await services.patient_consents(session, patient_id=patient_id)
    return schemas.ConsentStatusOut(may_start=decision.may_start, may_record=decision.may_record, purposes=purposes,
                                    consents=[consent_out(c, minimum=minimum, policy=setup.policy) for c in consents])


@router.route("GET", "/api/v1/me/consents", summary="My consents and what I still need to sign",
              response=schemas.ConsentStatusOut, roles=[Role.patient])
async def my_consents(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    assert principal.patient_id is not None  # noqa: S101  # the patient role always carries its patient id
    async with read(request) as session:
        out = await _status(session, principal.patient_id, request.app[keys.consent])
    return json_response(out)


@router.route("GET", "/api/v1/patients/{patient_id}/consents",
              summary="A patient's consents (their physicians, admins)",
              response=schemas.ConsentStatusOut, roles=[Role.physician, Role.admin], errors=(404,))
async def patient_consents(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    patient_id = path_uuid(request, "patient_id")
    async with tx(request) as session:
        if not await signing.may_act_for(session, actor_of(principal), patient_id):
            raise NotFound()
        out = await _status(session, patient_id, request.app[keys.consent])
        await audit.record(session, ctx=audit_context(request), action="consent.listed", object_type="patient",
                           object_id=patient_id, subject_patient_id=patient_id, now=utcnow())
    return json_response(out)


async def _load_for_read(request: web.Request, what: str) -> tuple[Consent, signing.Actor]:
    principal = await authenticate(request)
    actor = actor_of(principal)
    async with tx(request) as session:
        consent = await services.load(session, path_uuid(request, "consent_id"), actor)
        await services.audit_read(session, consent, actor=actor, ctx=audit_context(request), what=what, now=utcnow())
    return consent, actor


async def _document_of(request: web.Request, consent: Consent) -> ConsentDocument:
    async with read(request) as session:
        document = await session.get(ConsentDocument, consent.document_id)
    if document is None:
        raise NotFound()
    return document


@router.route("GET", "/api/v1/consents/seal-keys", summary="The clinic's public seal keys (JWK), for auditors",
              response=schemas.SealKeysOut, public=True)
async def seal_keys(request: web.Request) -> web.Response:
    return json_response(schemas.SealKeysOut(keys=seal.published_keys(request.app[keys.consent].seal_keys)))


@router.route("GET", "/api/v1/consents/{consent_id}", summary="One signed consent, with its evidence",
              response=schemas.ConsentOut, roles=[Role.patient, Role.physician, Role.admin], errors=(404,))
async def get_consent(request: web.Request) -> web.Response:
    consent, _ = await _load_for_read(request, "read")
    setup = request.app[keys.consent]
    async with read(request) as session:
        minimum = await templates.minimum_versions(session)
    return json_response(consent_out(consent, minimum=minimum, policy=setup.policy))


@router.route("GET", "/api/v1/consents/{consent_id}/pdf", summary="Download the signed PDF",
              roles=[Role.patient, Role.physician, Role.admin], errors=(404,), produces=PDF)
async def consent_pdf(request: web.Request) -> web.Response:
    consent, _ = await _load_for_read(request, "downloaded")
    document = await _document_of(request, consent)
    return _pdf(document.pdf, f"consent-{consent.purpose.value}-{consent.signed_at:%Y-%m-%d}.pdf")


@router.route("GET", "/api/v1/consents/{consent_id}/signature",
              summary="The patient's CMS signature, or the scan of the paper consent",
              roles=[Role.patient, Role.physician, Role.admin], errors=(404,), produces="application/octet-stream")
async def consent_signature(request: web.Request) -> web.Response:
    consent, _ = await _load_for_read(request, "signature_downloaded")
    if consent.signature_blob is None:
        raise NotFound("A simple e-signature has no signature file: its evidence is in the record")
    extension = {"application/pkcs7-signature": "p7s", "application/pdf": "pdf", "image/jpeg": "jpg",
                 "image/png": "png"}.get(consent.signature_media_type or "", "bin")
    media_type = consent.signature_media_type or "application/octet-stream"
    return web.Response(body=consent.signature_blob, content_type=media_type,
                        headers={"Content-Disposition": f'attachment; filename="consent-{consent.id}.{extension}"',
                                 "Cache-Control": "no-store"})


@router.route("GET", "/api/v1/consents/{consent_id}/verification",
              summary="Re-check the document hash, the patient's signature and the clinic's seal",
              response=schemas.VerificationOut, roles=[Role.patient, Role.physician, Role.admin], errors=(404,))
async def verification(request: web.Request) -> web.Response:
    consent, _ = await _load_for_read(request, "verified")
    async with read(request) as session:
        result = await services.verify(session, consent, setup=request.app[keys.consent])
    return json_response(schemas.VerificationOut(consent_id=result.consent_id, ok=result.ok, checks=[
        schemas.CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in result.checks]))


@router.route("GET", "/api/v1/consents/{consent_id}/fhir", summary="The consent as a FHIR R4 Consent resource",
              roles=[Role.patient, Role.physician, Role.admin], errors=(404, 409), produces="application/fhir+json")
async def consent_fhir(request: web.Request) -> web.Response:
    consent, _ = await _load_for_read(request, "exported")
    document = await _document_of(request, consent)
    try:
        resource = _fhir_resource(request, consent, document.pdf)
    except ValueError:  # the stored PDF no longer matches the sealed hash: nothing trustworthy to export
        raise ConsentDamaged() from None
    return web.Response(text=json.dumps(resource, ensure_ascii=False), content_type="application/fhir+json")


def _fhir_resource(request: web.Request, consent: Consent, pdf: bytes) -> dict[str, object]:
    setup = request.app[keys.consent]
    return fhir.consent_resource(fhir.ConsentFhirInput(
        consent_id=consent.id, patient_id=consent.patient_id, purpose=consent.purpose.value,
        status="inactive" if consent.withdrawn_at else "active", signed_at=consent.signed_at,
        withdrawn_at=consent.withdrawn_at, language=consent.language, template_version=consent.template_version,
        template_sha256=consent.template_sha256, document_sha256=consent.document_sha256, pdf=pdf,
        signature_level=consent.level.value, clinic_name=setup.clinic_name, base_url=_base_url(request)))


def _base_url(request: web.Request) -> str:
    return request.app[keys.settings].public_url.rstrip("/")



@router.route("POST", "/api/v1/consents/{consent_id}/withdraw", summary="Withdraw a consent",
              response=schemas.ConsentOut, roles=[Role.patient], errors=(404, 409))
async def withdraw(request: web.Request) -> web.Response:
    """Kept, marked withdrawn with the time. Withdrawing `recording` during a call stops the recording."""
    principal = await authenticate(request)
    setup = request.app[keys.consent]
    async with tx(request) as session:
        consent, event = await services.withdraw(session, consent_id=path_uuid(request, "consent_id"),
                                                 actor=actor_of(principal), ctx=audit_context(request), now=utcnow())
        minimum = await templates.minimum_versions(session)
    await request.app[keys.consent_withdrawals].publish(event)
    async with read(request) as session:
        await services.announce(session, request.app[keys.waiting_room], patient_id=consent.patient_id,
                                event="consent_withdrawn")
    return json_response(consent_out(consent, minimum=minimum, policy=setup.policy))

