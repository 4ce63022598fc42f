"""How the consent pages answer, and what they share: templates under `consent/`, the 404 page, the reader's
language, who acts, and telling the physicians' open waiting rooms that a patient's consents changed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from babel.dates import format_date

from consent import services, signing
from consent.pdf import body_blocks
from server import keys
from server.http.context import read
from server.http.principal import Principal, audit_context
from web import i18n
from web.consent_pages.texts import (
    LEVEL_NAMES,
    PATIENT_STATUS,
    PURPOSE_NAMES,
    SIGN_ERRORS,
    SIGNATURE_ERRORS,
    STAFF_ERRORS,
    STAFF_STATUS,
    WITHDRAW_MEANING,
    WITHDRAW_RECORDING,
)
from web.pages import PageAnswer, render


def consent_date(value: dt.datetime | None, locale: str, *, zone: dt.tzinfo = dt.UTC) -> str:
    """"22 ноября 2026 г.": the date in the clinic's zone, as the PDF prints its own date."""
    return "" if value is None else format_date(value.astimezone(zone).date(), "long", locale=locale)


# What every template may use (registered as globals, so the check-in and staff templates have them too).
GLOBALS: dict[str, Any] = {
    "CONSENT_PURPOSES": PURPOSE_NAMES, "CONSENT_PATIENT_STATUS": PATIENT_STATUS, "CONSENT_STAFF_STATUS": STAFF_STATUS,
    "CONSENT_LEVELS": LEVEL_NAMES, "CONSENT_SIGN_ERRORS": SIGN_ERRORS, "CONSENT_SIGNATURE_ERRORS": SIGNATURE_ERRORS,
    "CONSENT_STAFF_ERRORS": STAFF_ERRORS, "CONSENT_WITHDRAW_MEANING": WITHDRAW_MEANING,
    "CONSENT_WITHDRAW_RECORDING": WITHDRAW_RECORDING, "consent_date": consent_date, "consent_blocks": body_blocks,
}


async def render_page(request: web.Request, template: str, context: dict[str, Any], *,
                      status: int = 200) -> web.Response:
    """A template under `consent/`."""
    return await render(request, f"consent/{template}", context, status=status)


async def not_found(request: web.Request, *, back: str = "/my/consents") -> PageAnswer:
    """The 404 page; raise it, as a missing and another patient's document or consent must look the same."""
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": back}, status=404))


def page_locale(request: web.Request, principal: Principal) -> str:
    """The language the page is read in: the document a patient signs is prepared in it."""
    return i18n.choose_locale(request, account_locale=principal.locale,
                              default=request.app[keys.settings].default_locale)


def actor_of(principal: Principal) -> signing.Actor:
    return signing.Actor(principal.user_id, principal.role, principal.patient_id)


def client_of(request: web.Request) -> signing.Client:
    """The evidence of where a signature came from, as the API keeps it."""
    return signing.Client(audit_context(request).ip_hash, request.headers.get("User-Agent"))


def link(path: str, **params: object) -> str:
    """`path` with the query parameters that have a value, encoded."""
    kept = {name: str(value) for name, value in params.items() if value not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value or "")
    except ValueError:
        return None


async def notify_waiting_rooms(request: web.Request, patient_id: uuid.UUID, event: str) -> None:
    """Physicians whose queue holds this patient see the consent status change, as after the API's change."""
    async with read(request) as session:
        await services.announce(session, request.app[keys.waiting_room], patient_id=patient_id, event=event)
