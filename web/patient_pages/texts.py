"""What the patient pages say: the msgids for statuses, kinds, specialties and the domain's refusals.

Kept apart from the code that picks them so the wording can be reviewed (and translated in `patient.po`) in one
place; they are marked with `N_` and translated where they are shown, in the patient's language.
"""

from __future__ import annotations

from server.scheduling.models import ConsultationStatus
from web.i18n import N_

STATUS_TEXT = {
    ConsultationStatus.scheduled: N_("Coming up"),
    ConsultationStatus.waiting: N_("You are in the waiting room"),
    ConsultationStatus.in_call: N_("In progress"),
    ConsultationStatus.completed: N_("Took place"),
    ConsultationStatus.documented: N_("Took place; the physician's report is ready"),
    ConsultationStatus.cancelled: N_("Cancelled (will not take place)"),
    ConsultationStatus.no_show: N_("Missed"),
    ConsultationStatus.refused: N_("Not held: urgent care was needed"),
    ConsultationStatus.interrupted: N_("Interrupted by a connection problem"),
}
KIND_TEXT = {"primary": N_("Primary consultation"), "repeat": N_("Repeat consultation")}
KIND_HINT = {
    "primary": N_("A new complaint. The physician asks about it and advises you, but cannot make a diagnosis or "
                  "prescribe medicines online."),
    "repeat": N_("For a condition already diagnosed at this clinic. The physician can adjust your treatment and "
                 "prescribe."),
}
SPECIALTY_TEXT = {
    "general_practice": N_("General practice"),
    "therapy": N_("General practice"),
    "cardiology": N_("Cardiology"),
    "paediatrics": N_("Paediatrics"),
    "pediatrics": N_("Paediatrics"),
    "dermatology": N_("Dermatology"),
    "endocrinology": N_("Endocrinology"),
    "gastroenterology": N_("Gastroenterology"),
    "neurology": N_("Neurology"),
    "pulmonology": N_("Pulmonology"),
    "urology": N_("Urology"),
    "gynaecology": N_("Gynaecology"),
    "gynecology": N_("Gynaecology"),
    "otolaryngology": N_("Ear, nose and throat"),
}

# What the booking form says for each refusal of the domain (by problem code), and where.
TOP_ERRORS = {
    "slot_taken": N_("Someone has just booked this time. Please choose another time."),
    "slot_unavailable": N_("The physician no longer offers this time. Please choose another time."),
    "overlapping_consultation": N_("You already have a consultation at this time. Please choose another time."),
    "unknown_condition": N_("This reason is no longer in our list. Please choose the reason again."),
    "unknown_questionnaire": N_("This reason is no longer in our list. Please choose the reason again."),
    "not_found": N_("This physician is not receiving patients now. Please choose another time."),
    "too_late_to_change": N_("It is too late to change this consultation online. Please call the clinic."),
    "illegal_transition": N_("This consultation can no longer be changed."),
    "checkin_closed": N_("The waiting room is not open for this consultation now."),
    "choose_time": N_("Please choose a time."),
    "error": N_("Something went wrong. Please try again."),
}
KIND_ERRORS = {
    "no_prior_diagnosis": N_("A repeat consultation is only for a condition already diagnosed at this clinic, and we "
                             "have no such diagnosis for you. Please choose a primary consultation."),
    "primary_not_allowed": N_("For this condition only a repeat consultation is possible, after a diagnosis at "
                              "this clinic."),
    "repeat_not_allowed": N_("For this condition only a primary consultation is possible."),
}
# Problem codes after which the patient should simply pick another time.
SLOT_CODES = frozenset({"slot_taken", "slot_unavailable", "overlapping_consultation", "not_found"})
