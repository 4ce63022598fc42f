"""REST endpoints for the consultation protocol: the author's draft and signing, everyone's reading of
signed versions (audited), and verification."""

from __future__ import annotations

import base64
import binascii
import time
import uuid

from aiohttp import web
from sqlalchemy import select

from server import keys
from server.auth.models import Role
from server.auth.tokens import InvalidToken, decode_access_token
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import path_uuid
from server.http.principal import ACCESS_COOKIE, Principal, audit_context, authenticate
from server.http.problems import FieldError, NotFound, ValidationFailed
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.people.models import Physician
from server.records import rules, schemas, services, signing, verification
from server.records.content import ProtocolContent, loaded
from server.records.models import Protocol, ProtocolDocument, ProtocolVersion
from server.scheduling.services import Viewer

router = ApiRouter("protocols")
PDF = "application/pdf"
BASE = "/api/v1/consultations/{consultation_id}/protocol"
READERS = [Role.patient, Role.physician, Role.admin]


async def viewer_of(request: web.Request, principal: Principal) -> Viewer:
    """The caller as scheduling sees them, with their physician id (what decides authorship)."""
    physician_id = None
    if principal.role is Role.physician:
        async with read(request) as session:
            physician_id = await session.scalar(select(Physician.id).where(Physician.user_id == principal.user_id))
    return Viewer(principal.user_id, principal.role, principal.patient_id, physician_id)


async def _caller(request: web.Request) -> tuple[Principal, Viewer]:
    principal = await authenticate(request)
    return principal, await viewer_of(request, principal)


def token_id(request: web.Request) -> str | None:
    """The jti of the access token this request came with (already verified by `authenticate`)."""
    header = request.headers.get("Authorization")
    token = header.partition(" ")[2].strip() if header else request.cookies.get(ACCESS_COOKIE)
    settings = request.app[keys.settings]
    try:
        return decode_access_token(token or "", keys=request.app[keys.key_material].jwt, issuer=settings.jwt_issuer,
                                   audience=settings.jwt_audience, now=time.time()).jti
    except InvalidToken:
        return None


def if_match(request: web.Request) -> int | None:
    """The draft version named by `If-Match` (`"3"`, `W/"3"` or `3`); one that names no version matches none
    (-1), so the save is refused with the current version unless it changes nothing."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    value = header.strip().removeprefix("W/").strip('"')
    return int(value) if value.isdigit() and len(value) < 10 else -1


def draft_out(protocol: Protocol) -> schemas.DraftOut:
    content = loaded(protocol.draft)
    problems = rules.signing_problems(protocol.kind, rules.normalised(content))
    return schemas.DraftOut(version=protocol.revision, content=content, amendment_reason=protocol.draft_reason,
                            updated_at=protocol.draft_updated_at,
                            problems=[{"field": p.field, "type": p.type, "message": p.message} for p in problems])


# The physician's session and address are evidence for auditors, not something a patient needs to see.
STAFF_ONLY_EVIDENCE = frozenset({"session_id", "token_id", "ip_hash", "user_id"})


def version_out(v: ProtocolVersion, content: ProtocolContent, *, role: Role) -> schemas.VersionOut:
    base = f"/api/v1/consultations/{v.consultation_id}/protocol/versions/{v.id}"
    evidence = v.evidence if role is not Role.patient else {
        key: value for key, value in v.evidence.items() if key not in STAFF_ONLY_EVIDENCE}
    return schemas.VersionOut(id=v.id, version=v.version, signed_at=v.signed_at, level=v.level.value,
                              pdf_sha256=v.pdf_sha256, pdf_size=v.pdf_size, language=v.language,
                              amendment_reason=v.amendment_reason, content=content, evidence=evidence,
                              seal_key_id=v.seal_key_id, pdf_url=f"{base}/pdf", verification_url=f"{base}/verification")


def _etag(protocol: Protocol) -> dict[str, str]:
    return {"ETag": f'"{protocol.revision}"'}


def _pdf(data: bytes, filename: str) -> web.Response:
    return web.Response(body=data, content_type=PDF, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


@router.route("GET", BASE, summary="The protocol: your draft (its author) and every signed version",
              response=schemas.ProtocolOut, roles=READERS, errors=(404,))
async def get_protocol(request: web.Request) -> web.Response:
    """Patients see the signed versions of their own consultations; every read is in the audit log."""
    principal, viewer = await _caller(request)
    async with tx(request) as session:
        view = await services.read_protocol(session, consultation_id=path_uuid(request, "consultation_id"),
                                            viewer=viewer, ctx=audit_context(request, principal), now=utcnow())
    draft = draft_out(view.protocol) if view.draft is not None and view.protocol is not None else None
    out = schemas.ProtocolOut(consultation_id=view.consultation.id, kind=view.consultation.kind.value,
                              status=view.consultation.status.value, draft=draft,
                              versions=[version_out(v, view.contents[v.id], role=principal.role)
                                        for v in view.versions])
    return json_response(out, headers=_etag(view.protocol) if draft is not None and view.protocol else None)


@router.route("PUT", f"{BASE}/draft", summary="Autosave the draft (If-Match or `version`; 412 when stale)",
              body=schemas.DraftIn, response=schemas.DraftOut, roles=[Role.physician], errors=(404, 409, 412, 428))
async def put_draft(request: web.Request, body: schemas.DraftIn) -> web.Response:
    """Idempotent: a body equal to the stored draft answers it unchanged. A primary consultation's draft
    refuses `diagnosis` and `prescriptions` (422 `primary_consultation_no_diagnosis` /
    `primary_consultation_no_prescription`, the field in `errors`), and the refusal is audited."""
    principal, viewer = await _caller(request)
    header = if_match(request)
    precondition = header if header is not None else body.version
    content = ProtocolContent.model_validate(body.model_dump(exclude={"version"}))
    async with tx(request) as session:
        result = await services.save_draft(session, consultation_id=path_uuid(request, "consultation_id"),
                                           viewer=viewer, content=content, precondition=precondition,
                                           ctx=audit_context(request, principal), now=utcnow())
    if not isinstance(result, Protocol):
        raise result
    return json_response(draft_out(result), headers=_etag(result))


@router.route("POST", f"{BASE}/amendments", summary="Open an amendment of the signed protocol, with its reason",
              body=schemas.AmendmentIn, response=schemas.DraftOut, status=201, roles=[Role.physician],
              errors=(404, 409))
async def open_amendment(request: web.Request, body: schemas.AmendmentIn) -> web.Response:
    principal, viewer = await _caller(request)
    async with tx(request) as session:
        protocol = await services.open_amendment(session, consultation_id=path_uuid(request, "consultation_id"),
                                                 viewer=viewer, reason=body.reason,
                                                 ctx=audit_context(request, principal), now=utcnow())
    return json_response(draft_out(protocol), status=201, headers=_etag(protocol))


def document_out(consultation_id: uuid.UUID, document: ProtocolDocument) -> schemas.DocumentOut:
    return schemas.DocumentOut(id=document.id, version=document.version, draft_version=document.revision,
                               language=document.language, sha256=document.sha256, size=len(document.pdf),
                               pdf_url=f"/api/v1/consultations/{consultation_id}/protocol/documents/{document.id}/pdf")


@router.route("POST", f"{BASE}/prepare", summary="Render the draft to the PDF that is signed",
              body=schemas.PrepareIn, response=schemas.DocumentOut, status=201, roles=[Role.physician],
              errors=(404, 409, 422))
async def prepare(request: web.Request, body: schemas.PrepareIn) -> web.Response:
    """The PDF's id and SHA-256, for an external signer (`openssl cms -sign -binary` or a CryptoPro tool).
    Refused with `protocol_incomplete` naming the fields that signing needs."""
    principal, viewer = await _caller(request)
    consultation_id = path_uuid(request, "consultation_id")
    async with tx(request) as session:
        document = await signing.prepare(session, consultation_id=consultation_id, viewer=viewer,
                                         language=body.language, setup=request.app[keys.consent],
                                         ctx=audit_context(request, principal), now=utcnow())
    return json_response(document_out(consultation_id, document), status=201)


@router.route("GET", f"{BASE}/documents/{{document_id}}/pdf", summary="A prepared PDF, to sign elsewhere",
              roles=[Role.physician], errors=(404,), produces=PDF)
async def document_pdf(request: web.Request) -> web.Response:
    principal, viewer = await _caller(request)
    async with tx(request) as session:
        document = await services.load_document(session, consultation_id=path_uuid(request, "consultation_id"),
                                                document_id=path_uuid(request, "document_id"), viewer=viewer,
                                                ctx=audit_context(request, principal), now=utcnow())
    return _pdf(document.pdf, f"protocol-{document.id}.pdf")


def _signature(body: schemas.SignIn) -> bytes | None:
    if body.signature_cms_base64 is None:
        return None
    try:
        data = base64.b64decode(body.signature_cms_base64, validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise ValidationFailed("signature_cms_base64: not base64", errors=[
            FieldError(field="signature_cms_base64", message="not base64-encoded DER", type="malformed")])
    return data


@router.route("POST", f"{BASE}/sign", summary="Sign the prepared PDF (your CMS signature, or your session)",
              body=schemas.SignIn, response=schemas.VersionOut, status=201, roles=[Role.physician],
              errors=(404, 409, 422))
async def sign(request: web.Request, body: schemas.SignIn) -> web.Response:
    """With `signature_cms_base64`: an enhanced signature, verified against the clinic's trusted CAs and your
    e-mail (refusals name the reason: `digest_mismatch`, `untrusted`, ...). Without: a `server_session`
    signature, the clinic's seal over the PDF's hash, your session and token. The first signature makes the
    consultation `documented`; only after it is `completed` (409 `consultation_not_completed`)."""
    principal, viewer = await _caller(request)
    ctx = audit_context(request, principal)
    binding = signing.SessionBinding(principal.session_id, token_id(request), ctx.ip_hash)
    async with tx(request) as session:
        version = await signing.sign(session, consultation_id=path_uuid(request, "consultation_id"), viewer=viewer,
                                     document_id=body.document_id, signature=_signature(body), binding=binding,
                                     setup=request.app[keys.consent], ctx=ctx, now=utcnow())
        contents = await services.signed_contents(session, [version])
    return json_response(version_out(version, contents[version.id], role=principal.role), status=201)


async def _version(request: web.Request, what: str) -> ProtocolVersion:
    principal, viewer = await _caller(request)
    async with tx(request) as session:
        return await services.load_version(session, consultation_id=path_uuid(request, "consultation_id"),
                                           version_id=path_uuid(request, "version_id"), viewer=viewer,
                                           ctx=audit_context(request, principal), what=what, now=utcnow())


@router.route("GET", f"{BASE}/versions/{{version_id}}/pdf", summary="Download a signed version's PDF",
              roles=READERS, errors=(404,), produces=PDF)
async def version_pdf(request: web.Request) -> web.Response:
    version = await _version(request, "downloaded")
    async with read(request) as session:
        data = await services.version_pdf(session, version)
    return _pdf(data, f"protocol-v{version.version}-{version.signed_at:%Y-%m-%d}.pdf")


@router.route("GET", f"{BASE}/versions/{{version_id}}/signature", summary="The physician's CMS signature (.p7s)",
              roles=READERS, errors=(404,), produces="application/pkcs7-signature")
async def version_signature(request: web.Request) -> web.Response:
    version = await _version(request, "signature_downloaded")
    if version.signature_cms is None:
        raise NotFound("A session signature has no signature file: the clinic's seal over the record is it")
    return web.Response(body=version.signature_cms, content_type="application/pkcs7-signature", headers={
        "Content-Disposition": f'attachment; filename="protocol-v{version.version}.p7s"', "Cache-Control": "no-store"})


@router.route("GET", f"{BASE}/versions/{{version_id}}/verification",
              summary="Re-check the PDF's hash, the physician's signature and the clinic's seal",
              response=schemas.VerificationOut, roles=READERS, errors=(404,))
async def version_verification(request: web.Request) -> web.Response:
    version = await _version(request, "verified")
    async with read(request) as session:
        result = await verification.verify(session, version, setup=request.app[keys.consent])
    return json_response(schemas.VerificationOut(version_id=result.version_id, ok=result.ok, checks=[
        schemas.CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in result.checks]))
