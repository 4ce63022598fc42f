"""REST endpoints for recordings: a consultation's recordings, one recording, and playback of a participant's WebM
(decrypted on the fly, with byte ranges for seeking; every playback request is an audit entry)."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from media.recording import encryption, retention, services
from media.recording.models import Recording, RecordingOutput
from media.recording.ranges import Unsatisfiable, parse_range
from media.recording.schemas import (
    GapOut,
    LegalHoldIn,
    LegalHoldOut,
    ParticipantMediaOut,
    PlaybackQuery,
    RecordingList,
    RecordingOut,
)
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import path_uuid
from server.http.principal import audit_context, authenticate
from server.http.problems import FieldError, NotFound, ProblemError, ValidationFailed
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.scheduling.models import Consultation

router = ApiRouter("recordings")
WEBM = "video/webm"
VIEWERS = [Role.physician, Role.patient, Role.qa_expert, Role.admin]


class RecordingDamaged(ProblemError):
    status, code, title = 409, "recording_damaged", "The recording's stored file is damaged"


class RangeNotSatisfiable(ProblemError):
    status, code, title = 416, "range_not_satisfiable", "The requested range cannot be served"


async def _viewer(request: web.Request) -> services.Viewer:
    principal = await authenticate(request)
    return services.Viewer(principal.user_id, principal.role, principal.patient_id)


async def recording_out(session: AsyncSession, recording: Recording) -> RecordingOut:
    outputs = (await session.scalars(select(RecordingOutput).where(RecordingOutput.recording_id == recording.id)
                                     .order_by(RecordingOutput.participant))).all()
    return RecordingOut(
        id=recording.id, consultation_id=recording.consultation_id, state=recording.state.value,
        started_at=recording.started_at, stopped_at=recording.stopped_at, stop_reason=recording.stop_reason,
        finalised_at=recording.finalised_at, duration_ms=recording.duration_ms, origin=recording.origin,
        problems=recording.problems, gaps=[GapOut(**gap) for gap in recording.gaps],
        participants=[ParticipantMediaOut(
            participant=o.participant, sha256=o.sha256, size=o.size, media_size=o.plaintext_size,
            media_sha256=o.media_sha256,
            duration_ms=o.duration_ms, codecs=o.codecs.split(","),
            media_url=f"/api/v1/recordings/{recording.id}/media?participant={o.participant}") for o in outputs],
        manifest_sealed=recording.manifest_seal is not None)


async def consultation_recordings(session: AsyncSession, consultation_id: uuid.UUID) -> list[Recording]:
    return list((await session.scalars(select(Recording).where(Recording.consultation_id == consultation_id)
                                       .order_by(Recording.started_at))).all())


@router.route("GET", "/api/v1/consultations/{consultation_id}/recordings", summary="A consultation's recordings",
              response=RecordingList, roles=VIEWERS, errors=(404,))
async def list_recordings(request: web.Request) -> web.Response:
    """Their state (complete, partial, damaged), participants, gaps and hashes: for whoever may play them."""
    viewer = await _viewer(request)
    settings = request.app[keys.settings]
    async with read(request) as session:
        consultation = await session.get(Consultation, path_uuid(request, "consultation_id"))
        if consultation is None:
            raise NotFound()
        if not await services.may_view(session, consultation.id, viewer, settings=settings):
            raise NotFound()
        recordings = await consultation_recordings(session, consultation.id)
        items = [await recording_out(session, recording) for recording in recordings]
    return json_response(RecordingList(items=items))


@router.route("GET", "/api/v1/recordings/{recording_id}", summary="One recording", response=RecordingOut,
              roles=VIEWERS, errors=(404,))
async def get_recording(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    async with read(request) as session:
        recording = await session.get(Recording, path_uuid(request, "recording_id"))
        if recording is None or not await services.may_view(session, recording.consultation_id, viewer,
                                                             settings=request.app[keys.settings]):
            raise NotFound()
        out = await recording_out(session, recording)
    return json_response(out)


@router.route("GET", "/api/v1/recordings/{recording_id}/media", summary="Play a participant's recording (WebM)",
              query=PlaybackQuery, roles=VIEWERS, errors=(404, 416, 422), produces=WEBM)
async def media(request: web.Request, query: PlaybackQuery) -> web.StreamResponse:
    """The WebM, decrypted as it is sent (nothing decrypted is written anywhere), with `Range` for seeking: one
    range per request (`bytes=a-b`, `bytes=a-`, `bytes=-n`); anything else, or outside the file, is 416.
    Allowed: the consultation's physician, the QA expert assigned to it, administrators with a `reason`, and the
    patient if the clinic allows it; others get 404. Every request is an audit entry with the bytes served."""
    viewer = await _viewer(request)
    settings = request.app[keys.settings]
    recording_id = path_uuid(request, "recording_id")
    async with tx(request) as session:
        try:
            playback = await services.open_playback(
                session, recording_id=recording_id, participant=query.participant, viewer=viewer,
                reason=query.reason, keys=request.app[keys.key_material], storage=services.storage_for(settings),
                settings=settings)
        except encryption.Tampered:
            raise RecordingDamaged("The stored file does not authenticate; the recording's verification says "
                                   "what is wrong") from None
        except services.ReasonRequired:
            raise ValidationFailed("Administrators state why they open a recording", errors=[
                FieldError(field="reason", message="required for administrators", type="missing")]) from None
        size = playback.reader.size
        try:
            wanted = parse_range(request.headers.get("Range"), size)
        except Unsatisfiable as exc:
            raise RangeNotSatisfiable(str(exc), headers={"Content-Range": f"bytes */{size}"}) from None
        first, last = wanted if wanted is not None else (0, size - 1)
        await services.audit_playback(session, playback, ctx=audit_context(request), viewer=viewer,
                                      reason=query.reason, ranges=[(first, last)], now=utcnow())
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store", "Content-Type": WEBM,
               "Content-Length": str(last - first + 1 if size else 0)}
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    response = web.StreamResponse(status=206 if wanted is not None else 200, headers=headers)
    await response.prepare(request)
    position = first
    while size and position <= last:  # chunk by chunk: a long recording is never whole in memory
        upto = min(last, (position // services.CHUNK_BYTES + 1) * services.CHUNK_BYTES - 1)
        await response.write(await asyncio.to_thread(services.read_plaintext, playback, position, upto))
        position = upto + 1
    await response.write_eof()
    return response


@router.route("PUT", "/api/v1/recordings/{recording_id}/legal-hold", summary="Put a recording on legal hold or "
              "release it", body=LegalHoldIn, response=LegalHoldOut, roles=[Role.admin], errors=(404, 409, 422))
async def legal_hold(request: web.Request, body: LegalHoldIn) -> web.Response:
    """A recording on legal hold is never erased by retention (docs/retention.md). Setting and releasing a hold are
    audited with the reason (`recording.legal_hold_set`, `recording.legal_hold_released`); 409 `recording_erased`
    when the recording is erased already."""
    async with tx(request) as session:
        recording = await retention.set_legal_hold(
            session, recording_id=path_uuid(request, "recording_id"), hold=body.hold, reason=body.reason,
            ctx=audit_context(request), now=utcnow())
        out = LegalHoldOut(id=recording.id, state=recording.state.value, legal_hold=recording.legal_hold)
    return json_response(out)
