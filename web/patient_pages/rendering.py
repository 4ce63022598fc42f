"""How every patient page answers: its template with the shared helpers, the not-found page, the refusal pages.

One place builds the context the patient templates rely on (`HELPERS`), so a template can call `when` or look up
`TOP_ERRORS` whichever handler rendered it. A screening stop is answered with a page of its own (422), never with
a problem document, because a patient reads it, not a program.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.auth.models import Role
from server.scheduling import services
from server.scheduling.api import EMERGENCY
from server.scheduling.models import ConsultationStatus
from server.scheduling.screening import Rule
from web.pages import PageAnswer, render
from web.patient_pages.catalogue import search_text
from web.patient_pages.formatting import clock, day_label, iso, link, number, specialty_text, when
from web.patient_pages.texts import KIND_ERRORS, KIND_HINT, KIND_TEXT, STATUS_TEXT, TOP_ERRORS

PATIENTS = frozenset({Role.patient})

# What every patient template may call or look up (besides what `render` adds).
HELPERS: dict[str, Any] = {
    "when": when, "day_label": day_label, "clock": clock, "number": number, "specialty_text": specialty_text,
    "iso": iso, "link": link, "search_text": search_text, "STATUS_TEXT": STATUS_TEXT, "KIND_TEXT": KIND_TEXT,
    "KIND_HINT": KIND_HINT, "EMERGENCY": EMERGENCY, "TOP_ERRORS": TOP_ERRORS, "KIND_ERRORS": KIND_ERRORS,
    "Status": ConsultationStatus,
}


async def render_page(request: web.Request, template: str, context: dict[str, Any], *,
                      status: int = 200) -> web.Response:
    """A template under `patient/`, with the helpers every patient template may use."""
    return await render(request, f"patient/{template}", {**HELPERS, **context}, status=status)


async def not_found(request: web.Request) -> PageAnswer:
    """The 404 page, leading back to the patient's consultations; raise it, as a missing and a foreign
    consultation must look the same."""
    return PageAnswer(await render(request, "error.html", {"kind": "not_found", "back": "/my/consultations"},
                                   status=404))


async def refusal_page(request: web.Request, refusal: services.ScreeningRefusal, *, stage: str,
                       back: str) -> web.Response:
    """The emergency page for a red flag, else the recommendation to come in person; both 422."""
    rules_hit: list[Rule] = list(refusal.rules)  # red flags first; each says what to do, in both languages
    template = "emergency.html" if refusal.red_flag else "in_person.html"
    return await render_page(request, template, {"rules": rules_hit, "stage": stage, "back": back}, status=422)
