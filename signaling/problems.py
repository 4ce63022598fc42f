"""The call's refusals, each a problem document with a stable code."""

from __future__ import annotations

from server.http.problems import Conflict, ProblemError


class CannotJoin(Conflict):
    """Not now: before admission, outside the time window, or the call is over."""

    title = "The call cannot be joined now"


class MediaCapacity(ProblemError):
    """This node hosts as many calls as it is configured for (TELEMED_MEDIA_MAX_CALLS): a new call waits rather
    than degrading the calls in progress."""

    status, code, title = 503, "media_capacity", "The video service is fully busy"
    RETRY_AFTER_SECONDS = 30

    def __init__(self) -> None:
        super().__init__("Every place for a call on this server is taken; try again shortly",
                         headers={"Retry-After": str(self.RETRY_AFTER_SECONDS)})


class CannotInvite(Conflict):
    """The consultation is over or cancelled: nobody can be invited to its call any more."""

    code, title = "consultation_over", "Nobody can be invited to this consultation now"


class TooManyInvitations(Conflict):
    """A call has room for a few guests; revoke an invitation to make another."""

    code, title = "too_many_invitations", "This consultation has as many invitations as allowed"


class InvitationGone(ProblemError):
    """The guest's link no longer opens the call: revoked by the physician, or past the consultation's time."""

    status, code, title = 410, "invitation_gone", "This invitation no longer opens the call"
