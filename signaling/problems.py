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
