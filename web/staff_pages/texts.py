"""What the staff pages say for the codes they show: statuses, kinds, refusals, device-check problems.

Kept apart from the handlers so the wording can be reviewed (and translated in `staff.po`) in one place; the
texts are marked with `N_` and translated where they are shown, in the page's language.
"""

from __future__ import annotations

from server.http.problems import ProblemError
from server.scheduling.models import ConsultationKind, ConsultationStatus
from web.i18n import N_

STATUS_NAMES = {
    ConsultationStatus.scheduled: N_("Scheduled"), ConsultationStatus.waiting: N_("Waiting"),
    ConsultationStatus.in_call: N_("In the call"), ConsultationStatus.completed: N_("Completed"),
    ConsultationStatus.documented: N_("Documented"), ConsultationStatus.cancelled: N_("Booking cancelled"),
    ConsultationStatus.no_show: N_("Did not come"), ConsultationStatus.refused: N_("Stopped at screening"),
    ConsultationStatus.interrupted: N_("Interrupted"),
}
# What the page says for a domain refusal, by problem code; anything else gets the generic message.
PROBLEM_MESSAGES = {
    "illegal_transition": N_("This cannot be done in the consultation's current status. The page shows it now."),
    "not_found": N_("It no longer exists. The page shows what is there now."),
    "slot_taken": N_("This time has just been booked by someone else. Choose another time."),
    "slot_unavailable": N_("The physician no longer offers this time. Choose another time."),
    "overlapping_consultation": N_("The patient already has a consultation at this time. Choose another time."),
    "too_late_to_change": N_("It is too close to the start to change this booking."),
    "unknown_questionnaire": N_("No screening questionnaire with this code is published."),
    "consent_required": N_("The patient has not signed the consents the clinic requires (or has withdrawn one), so "
                           "they cannot be admitted. The consents are listed on the consultation page."),
}
KIND_NAMES = {ConsultationKind.primary: N_("Primary"), ConsultationKind.repeat: N_("Repeat")}
GENERIC_PROBLEM = N_("The change could not be made. Reload the page and try again.")


def problem_message(problem: ProblemError) -> str:
    """The message a page shows for a domain refusal, so staff know what to do next."""
    return PROBLEM_MESSAGES.get(problem.code, GENERIC_PROBLEM)


# What the patient's device check reports, in words a physician reads at a glance (web/static/patient.js).
DEVICE_PROBLEMS = {
    "no_js": N_("the browser ran no check (scripts off)"),
    "devices_not_tested": N_("the patient skipped the check"),
    "permission_denied": N_("camera or microphone not allowed"),
    "no_camera": N_("no camera found"),
    "no_microphone": N_("no microphone found"),
    "microphone_silent": N_("no sound from the microphone during the check"),
    "speaker_not_heard": N_("the patient did not hear the test sound"),
    "speaker_not_tested": N_("sound not tested"),
    "no_media_devices": N_("the browser cannot use a camera"),
    "no_web_audio": N_("the browser cannot test sound"),
    "media_error": N_("camera or microphone error"),
}
