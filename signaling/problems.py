"""The call's refusals, each a problem document with a stable code."""

from __future__ import annotations

from server.http.problems import Conflict


class CannotJoin(Conflict):
    """Not now: before admission, outside the time window, or the call is over."""

    title = "The call cannot be joined now"
