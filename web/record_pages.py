"""The medical record and the recording player, as pages.

The record (`/my/record` for the patient, `/clinic/patients/{id}/record` for the physicians who treat them and
admins) is a timeline of encounters; opening it is an audit entry, as reading it through the API is. The player
(`/my/recordings/{id}`, `/clinic/recordings/{id}`) shows both participants side by side on one timeline; the
videos stream from the playback API, which audits every request. An administrator states a reason first.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consent import signing
from media.recording import services as recordings
from media.recording.models import FINAL_STATES, Recording, RecordingOutput
from server import keys
from server.audit import services as audit
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.principal import Principal, audit_context
from server.records import timeline
from server.scheduling import queries
from server.scheduling.models import Questionnaire
from web.consent_pages import status as consent_status
from web.i18n import N_
from web.pages import PageAnswer, page_handler, page_user, render
from web.staff_pages.consultation import screening_answers

STAFF_READERS = {Role.physician, Role.admin, Role.qa_expert}
RECORDING_STATES = {"recording": N_("Being recorded"), "stopped": N_("Being processed"),
                    "complete": N_("Complete"), "partial": N_("Partial"), "damaged": N_("Damaged"),
                    "erased": N_("Erased (retention period over)")}
ROLE_NAMES = {"physician": N_("Physician"), "patient": N_("Patient"), "guest": N_("Guest"),
              "admin": N_("Administrator"), "qa_expert": N_("Quality expert"), "system": N_("system")}


async def _not_found(request: web.Request, back: str) -> PageAnswer:
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": back}, status=404))


def _uuid(request: web.Request, name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        return None


async def own_record_page(request: web.Request) -> web.Response:
    principal = await page_user(request, roles={Role.patient})
    assert principal.patient_id is not None  # noqa: S101  # a patient account always has its patient
    return await _record(request, principal, principal.patient_id, back="/my/consultations")


async def patient_record_page(request: web.Request) -> web.Response:
    principal = await page_user(request, roles={Role.physician, Role.admin})
    patient_id = _uuid(request, "patient_id")
    if patient_id is None:
        raise await _not_found(request, "/")
    return await _record(request, principal, patient_id, back="/")


async def _record(request: web.Request, principal: Principal, patient_id: uuid.UUID, *, back: str) -> web.Response:
    """The timeline; a physician sees it only for a patient they treat (a booking not cancelled), like consents."""
    settings = request.app[keys.settings]
    async with tx(request) as db:
        if not await signing.may_act_for(db, signing.Actor(principal.user_id, principal.role, principal.patient_id),
                                         patient_id):
            raise await _not_found(request, back)
        await audit.record(db, ctx=audit_context(request), action="record.read", object_type="patient",
                           object_id=patient_id, subject_patient_id=patient_id, now=utcnow())
        encounters = await timeline.patient_record(db, patient_id)
        answers = {}
        for encounter in encounters:
            consultation = encounter.view.consultation
            screening = await db.get(Questionnaire, consultation.questionnaire_id)
            checkin = (await db.get(Questionnaire, consultation.checkin_questionnaire_id)
                       if consultation.checkin_questionnaire_id else None)
            answers[consultation.id] = (
                screening_answers(screening.definition if screening else None, consultation.screening_answers),
                screening_answers(checkin.definition if checkin else None, consultation.checkin_answers))
        consents = await consent_status.overview(db, patient_id=patient_id,
                                                 policy=request.app[keys.consent].policy, now=utcnow())
        patient = await consent_status.patient_name_and_locale(db, patient_id)
    staff = principal.role is not Role.patient
    return await render(request, "record/record.html", {
        "encounters": encounters, "answers": answers, "consents": consents, "patient_name": patient[0] if patient
        else "", "staff": staff, "back": back, "player": "/clinic/recordings/" if staff else "/my/recordings/",
        "may_play": staff or settings.recording_patient_playback, "patient_locale": patient[1] if patient else "ru",
        "final_states": {state.value for state in FINAL_STATES}, "zone": request.app[keys.consent].zone})


async def own_player_page(request: web.Request) -> web.Response:
    principal = await page_user(request, roles={Role.patient})
    return await _player(request, principal, back="/my/record")


async def staff_player_page(request: web.Request) -> web.Response:
    principal = await page_user(request, roles=STAFF_READERS)
    return await _player(request, principal, back="/")


async def _player(request: web.Request, principal: Principal, *, back: str) -> web.Response:
    settings = request.app[keys.settings]
    recording_id = _uuid(request, "recording_id")
    if recording_id is None:
        raise await _not_found(request, back)
    viewer = recordings.Viewer(principal.user_id, principal.role, principal.patient_id)
    async with tx(request) as db:
        recording = await db.get(Recording, recording_id)
        if recording is None or recording.state not in FINAL_STATES or not await recordings.may_view(
                db, recording.consultation_id, viewer, settings=settings):
            raise await _not_found(request, back)
        view = await queries.view(db, recording.consultation_id)
        outputs = await _outputs(db, recording)
        chat = await timeline.chat_of(db, recording.consultation_id)
        await audit.record(db, ctx=audit_context(request), action="recording.opened", object_type="recording",
                           object_id=recording.id, subject_patient_id=view.consultation.patient_id, now=utcnow())
    reason = request.query.get("reason", "").strip()
    if principal.role is Role.admin and len(reason) < 3:
        return await render(request, "record/reason.html", {"recording": recording, "view": view, "back": back,
                                                            "zone": request.app[keys.consent].zone})
    origin = recording.origin or recording.started_at.timestamp()
    duration_ms = max(recording.duration_ms or 0, 1)
    suffix = f"&reason={quote(reason[:200])}" if principal.role is Role.admin else ""
    return await render(request, "record/player.html", {
        "recording": recording, "view": view, "back": back if principal.role is not Role.patient else "/my/record",
        "record_url": f"/clinic/patients/{view.consultation.patient_id}/record"
        if principal.role in (Role.physician, Role.admin) else "/my/record",
        "duration_ms": duration_ms,
        "videos": [{"participant": o.participant, "url": f"/api/v1/recordings/{recording.id}/media?participant="
                    f"{o.participant}{suffix}", "duration_ms": o.duration_ms} for o in outputs],
        "chat": [{"at_ms": max(0, round((line.sent_at.timestamp() - origin) * 1000)), "line": line} for line in chat
                 if 0 <= line.sent_at.timestamp() - origin <= duration_ms / 1000 + 1],
        "gaps": recording.gaps, "zone": request.app[keys.consent].zone})


async def _outputs(db: AsyncSession, recording: Recording) -> list[RecordingOutput]:
    order = {"physician": 0, "patient": 1, "guest": 2}
    rows = (await db.scalars(select(RecordingOutput).where(RecordingOutput.recording_id == recording.id))).all()
    return sorted(rows, key=lambda o: order.get(o.participant, 9))


def setup(app: web.Application) -> None:
    aiohttp_jinja2.get_env(app).globals.update(RECORDING_STATES=RECORDING_STATES, ROLE_NAMES=ROLE_NAMES)
    app.router.add_get("/my/record", page_handler(own_record_page), name="own_record")
    app.router.add_get("/clinic/patients/{patient_id}/record", page_handler(patient_record_page),
                       name="patient_record")
    app.router.add_get("/my/recordings/{recording_id}", page_handler(own_player_page), name="own_player")
    app.router.add_get("/clinic/recordings/{recording_id}", page_handler(staff_player_page), name="staff_player")
