"""Who may join a consultation's call, and when. Pure: the caller passes the facts and the time."""

from __future__ import annotations

import datetime as dt

from server.scheduling.models import ConsultationStatus
from signaling.models import CallRole

# The physician opens the call while the patient waits; the patient enters once admitted; a call that
# dropped (interrupted) may be rejoined by both.
_JOINABLE = {
    CallRole.physician: frozenset({ConsultationStatus.waiting, ConsultationStatus.in_call,
                                   ConsultationStatus.interrupted}),
    CallRole.patient: frozenset({ConsultationStatus.in_call, ConsultationStatus.interrupted}),
    CallRole.guest: frozenset({ConsultationStatus.in_call, ConsultationStatus.interrupted}),
}


def join_refusal(*, role: CallRole, status: ConsultationStatus, starts_at: dt.datetime, ends_at: dt.datetime,
                 now: dt.datetime, opens_before: dt.timedelta, overrun: dt.timedelta) -> str | None:
    """Why this participant cannot join now (a problem code), or None."""
    if status not in _JOINABLE[role]:
        return "not_admitted" if role is not CallRole.physician and status is ConsultationStatus.waiting \
            else "call_not_open"
    if now < starts_at - opens_before:
        return "too_early"
    if now > ends_at + overrun:
        return "too_late"
    return None
