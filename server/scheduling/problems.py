"""The scheduling domain's refusals, each a problem document with a stable code."""

from __future__ import annotations

from typing import Any

from server.http.problems import Conflict, ProblemError


class SlotTaken(Conflict):
    code, title = "slot_taken", "This time has just been booked by someone else"


class OverlappingConsultation(Conflict):
    code, title = "overlapping_consultation", "You already have a consultation at this time"


class IllegalStatusChange(Conflict):
    code, title = "illegal_transition", "The consultation cannot change like that now"


class TooLateToChange(Conflict):
    code, title = "too_late_to_change", "It is too close to the start to change this booking"


class CheckinClosed(Conflict):
    code, title = "checkin_closed", "Check-in is not open for this consultation now"


class SlotUnavailable(ProblemError):
    status, code, title = 422, "slot_unavailable", "The physician does not offer this time"


class KindNotAllowed(ProblemError):
    status, title = 422, "This kind of consultation is not possible for this condition"


class UnknownCondition(ProblemError):
    status, code, title = 422, "unknown_condition", "This condition is not in the clinic's catalogue"


class ScreeningStopped(ProblemError):
    """A red flag (call an ambulance) or a contraindication (come in person): nothing is booked."""

    status = 422

    def __init__(self, code: str, title: str, detail: str, rules: list[dict[str, Any]], **extra: Any) -> None:
        super().__init__(detail, code=code, title=title, rules=rules, **extra)
