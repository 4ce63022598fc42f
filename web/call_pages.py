"""The call page: the patient's and the physician's view of the live video consultation.

The page itself holds no secret and no health data (names, the time, the kind of consultation): joining is
`POST /api/v1/consultations/{id}/join` from the page's script, which checks the window, the admission and the
consents and is audited. So the page only has to find the consultation the way the other pages do (another
patient's answers as a missing one, 404) and send the patient who is not let in yet to the waiting room, and
anyone to the consultation's page once it is over.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from server import keys
from server.auth.models import Role
from server.http.context import read
from server.http.problems import NotFound
from server.scheduling import queries, services
from server.scheduling.api import viewer_for
from server.scheduling.models import Consultation, ConsultationKind, ConsultationStatus
from web import i18n
from web.pages import PageAnswer, page_handler, page_user, render

#: The statuses in which the page offers the call; the join request has the last word (window, consents).
LIVE = frozenset({ConsultationStatus.scheduled, ConsultationStatus.waiting, ConsultationStatus.in_call,
                  ConsultationStatus.interrupted})
PATIENT_NOT_LET_IN = frozenset({ConsultationStatus.scheduled, ConsultationStatus.waiting})

N_ = i18n.N_
#: What the page's script says, translated here so that the script carries no language of its own.
SCRIPT_TEXTS = {
    "connected": N_("Connected"),
    "reconnecting": N_("Connection lost. Reconnecting…"),
    "waiting_other_physician": N_("Waiting for the physician to join…"),
    "waiting_other_patient": N_("Waiting for the patient to join…"),
    "other_reconnecting": N_("%(name)s is reconnecting…"),
    "physician_left": N_("The doctor has left the call."),
    "patient_left": N_("The patient has left the call."),
    "guest_left": N_("The guest has left the call."),
    "joined": N_("%(name)s joined the call."),
    "muted": N_("%(name)s turned the microphone off."),
    "unmuted": N_("%(name)s turned the microphone on."),
    "camera_off": N_("%(name)s turned the camera off."),
    "camera_on": N_("%(name)s turned the camera on."),
    "recording_on": N_("This consultation is being recorded."),
    "recording_off": N_("This consultation is not being recorded."),
    "recording_paused": N_("The physician paused the recording."),
    "pause_recording": N_("Pause the recording"),
    "resume_recording": N_("Resume the recording"),
    "ended": N_("The consultation has ended."),
    "left": N_("You have left the call."),
    "replaced": N_("The call was opened in another window or device."),
    "quality_good": N_("Good connection"),
    "quality_fair": N_("Unstable connection"),
    "quality_poor": N_("Poor connection"),
    "quality_detail": N_("round trip %(rtt)s ms, loss %(loss)s%%, %(fps)s frames/s"),
    "chat_from": N_("%(name)s: %(text)s"),
    "no_devices": N_("No camera or microphone could be opened. The other side will not see or hear you; "
                     "check the browser's permission and rejoin."),
    "audio_only": N_("The camera could not be opened: you take part with sound only."),
    "confirm_end": N_("End the consultation for everyone?"),
    "confirm_leave": N_("Leave the call?"),
    "error": N_("Something went wrong. Please try again."),
    "error_not_admitted": N_("The physician has not let you in yet. Please wait in the waiting room."),
    "error_too_early": N_("The call is not open yet. Please come back closer to the start time."),
    "error_too_late": N_("The time of this consultation is over."),
    "error_call_not_open": N_("This consultation cannot be joined now."),
    "error_consent_required": N_("A consent you need for this consultation is missing or withdrawn."),
    "error_media_capacity": N_("The clinic's video service is fully busy. Please try again in a minute."),
    "error_unauthorized": N_("Your session has ended. Please sign in again."),
    "error_invitation_gone": N_("This invitation is no longer valid. Ask the physician for a new link."),
    "error_call_full": N_("Another guest is already in this call."),
    "error_guest_not_started": N_("The call has not started yet. Keep this page open: you will be connected as soon "
                                  "as the physician starts it."),
    "error_media_failed": N_("The video connection failed. Reconnecting…"),
    "gave_up": N_("We could not reconnect. Check your internet connection and press Join again."),
    "role_physician": N_("Physician"),
    "role_patient": N_("Patient"),
    "role_guest": N_("Guest"),
}


async def patient_call_page(request: web.Request) -> web.StreamResponse:
    """The patient's call: open once the physician has let them in."""
    return await _call_page(request, Role.patient)


async def physician_call_page(request: web.Request) -> web.StreamResponse:
    """The physician's call: open from 15 minutes before the start, as the join request checks."""
    return await _call_page(request, Role.physician)


async def _call_page(request: web.Request, role: Role) -> web.StreamResponse:
    principal = await page_user(request, roles={role})
    own = "/my/consultations" if role is Role.patient else "/clinic/consultations"
    consultation_id = await _path_id(request, back="/my/consultations" if role is Role.patient else "/")
    try:
        async with read(request) as db:
            consultation = await services.load(db, consultation_id, await viewer_for(request, principal))
            view = await queries.view(db, consultation.id)
    except NotFound:
        raise await _not_found(request, "/my/consultations" if role is Role.patient else "/") from None
    page = f"{own}/{consultation.id}"
    if consultation.status not in LIVE:
        raise web.HTTPFound(page)
    if role is Role.patient and consultation.status in PATIENT_NOT_LET_IN:
        raise web.HTTPFound(f"{page}/waiting-room")
    other = view.physician_name if role is Role.patient else view.patient_name
    return await render_call(request, consultation=consultation, role=role.value, other_name=other, back=page,
                             join_url=f"/api/v1/consultations/{consultation.id}/join",
                             account_locale=principal.locale)


async def render_call(request: web.Request, *, consultation: Consultation, role: str, other_name: str, back: str,
                      join_url: str, account_locale: str | None) -> web.Response:
    """The call page for one side of the call (a guest's too: its join request is its own, `join_url`)."""
    catalogue = i18n.translations(i18n.choose_locale(request, account_locale=account_locale,
                                                     default=request.app[keys.settings].default_locale))
    context: dict[str, Any] = {
        "c": consultation, "role": role, "other_name": other_name, "back": back, "join_url": join_url,
        "primary": consultation.kind is ConsultationKind.primary,
        "texts": {key: catalogue.gettext(text) for key, text in SCRIPT_TEXTS.items()},
    }
    return await render(request, "call.html", context)


async def _path_id(request: web.Request, *, back: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["consultation_id"])
    except ValueError:
        raise await _not_found(request, back) from None


async def _not_found(request: web.Request, back: str) -> PageAnswer:
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": back}, status=404))


def setup(app: web.Application) -> None:
    """Registers the call pages, one for each side of the call."""
    app.router.add_get("/my/consultations/{consultation_id}/call", page_handler(patient_call_page),
                       name="my_call")
    app.router.add_get("/clinic/consultations/{consultation_id}/call", page_handler(physician_call_page),
                       name="clinic_call")
