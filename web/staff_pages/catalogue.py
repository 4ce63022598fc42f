"""The admin's catalogue of conditions teleconsultations accept, each with its screening questionnaire.

An entry that does not validate is shown again with a message by each field; a questionnaire code nobody
published is refused by the service and said by the questionnaire field.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import audit_context
from server.http.problems import ProblemError
from server.scheduling import conditions
from server.scheduling.screening import ConditionEntry
from web.i18n import N_
from web.pages import page_user, read_form, render
from web.staff_pages.questionnaires import current_questionnaires
from web.staff_pages.texts import problem_message

CONDITION_FIELDS = ("code", "icd10", "name_ru", "name_en", "audience", "questionnaire")
CONDITION_ERRORS = {"code": N_("Lower-case Latin letters, digits and _ only, e.g. acute_bronchitis."),
                    "icd10": N_("An ICD-10 code such as J06.9, or leave it empty."),
                    "name_ru": N_("Enter the name in Russian."), "name_en": N_("Enter the name in English."),
                    "audience": N_("Choose who the entry is for."),
                    "questionnaire": N_("Choose a published questionnaire."),
                    "order": N_("Allow primary, repeat or both kinds of consultation.")}


def _condition_errors(exc: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        field = "_".join(loc) if loc[:1] == ["name"] else (loc[0] if loc else "order")
        found.setdefault(field, CONDITION_ERRORS.get(field, CONDITION_ERRORS["order"]))
    return found


async def _catalogue_response(request: web.Request, *, values: dict[str, Any] | None = None,
                              errors: dict[str, str] | None = None, status: int = 200) -> web.Response:
    async with read(request) as db:
        entries = await conditions.current_conditions(db, include_inactive=True)
    editing = request.query.get("edit")
    if values is None:
        values = {"code": "", "icd10": "", "name_ru": "", "name_en": "", "audience": "any", "questionnaire": "",
                  "allows_primary": True, "allows_repeat": True, "active": True}
        for entry in entries:
            if entry.code == editing:
                values = _condition_values(entry)
    return await render(request, "staff/catalogue.html", {
        "entries": entries, "questionnaires": await current_questionnaires(request), "values": values,
        "errors": errors or {}, "saved": request.query.get("saved"),
        "existing": {entry.code for entry in entries}}, status=status)


def _condition_values(entry: Any) -> dict[str, Any]:
    return {"code": entry.code, "icd10": entry.icd10 or "", "name_ru": entry.name_ru, "name_en": entry.name_en,
            "audience": entry.audience, "questionnaire": entry.questionnaire_code,
            "allows_primary": entry.allows_primary, "allows_repeat": entry.allows_repeat, "active": entry.active}


async def catalogue_page(request: web.Request) -> web.Response:
    """The catalogue, with the entry in `?edit=` loaded into the form."""
    await page_user(request, roles=[Role.admin])
    return await _catalogue_response(request)


async def catalogue_submit(request: web.Request) -> web.Response:
    """Add an entry or change the one with the same code."""
    await page_user(request, roles=[Role.admin])
    form = await read_form(request)
    values: dict[str, Any] = {key: form.get(key, "").strip() for key in CONDITION_FIELDS}
    values |= {flag: form.get(flag) == "on" for flag in ("allows_primary", "allows_repeat", "active")}
    try:
        entry = ConditionEntry.model_validate({
            "code": values["code"], "icd10": values["icd10"] or None,
            "name": {"ru": values["name_ru"], "en": values["name_en"]}, "audience": values["audience"],
            "allows_primary": values["allows_primary"], "allows_repeat": values["allows_repeat"],
            "questionnaire": values["questionnaire"]})
    except ValidationError as exc:
        return await _catalogue_response(request, values=values, errors=_condition_errors(exc), status=422)
    try:
        async with tx(request) as db:
            saved = await conditions.save_condition(db, entry=entry, active=values["active"],
                                                    ctx=audit_context(request), now=utcnow())
    except ProblemError as problem:
        field = "questionnaire" if problem.code == "unknown_questionnaire" else "order"
        return await _catalogue_response(request, values=values, errors={field: problem_message(problem)},
                                         status=problem.status)
    raise web.HTTPSeeOther(f"/clinic/catalogue?saved={saved.code}")

