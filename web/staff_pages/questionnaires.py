"""Screening questionnaires for admins: the published ones, each as people read it, and publishing a version.

A new version is pasted as JSON; what does not parse or validate is shown back with where it went wrong, so
the admin fixes the text in place. Publishing never rewrites a version: it adds the next one.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import select

from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import audit_context
from server.http.problems import ProblemError
from server.scheduling import conditions
from server.scheduling.models import Questionnaire
from server.scheduling.screening import QuestionnaireDefinition
from web.i18n import N_
from web.pages import page_user, read_form, render
from web.staff_pages.common import not_found


async def current_questionnaires(request: web.Request) -> list[Questionnaire]:
    """The current version of every questionnaire, for the list here and the catalogue's choice."""
    # No listing service yet (conditions.current_questionnaire reads one by code); a read-only query.
    async with read(request) as db:
        rows = await db.scalars(select(Questionnaire).where(Questionnaire.is_current.is_(True))
                                .order_by(Questionnaire.code))
        return list(rows.all())


async def questionnaires_page(request: web.Request) -> web.Response:
    """The published questionnaires, for admins."""
    await page_user(request, roles=[Role.admin])
    return await render(request, "staff/questionnaires.html",
                        {"questionnaires": await current_questionnaires(request)})


async def _questionnaire_response(request: web.Request, *, text: str | None = None,
                                  errors: list[tuple[str, str]] | None = None,
                                  problem: tuple[str, dict[str, Any]] | None = None,
                                  status: int = 200) -> web.Response:
    """The questionnaire as people read it, and its JSON to publish a new version from.

    `errors` are the format's own (field path, message); `problem` is a message of these pages with its
    values, e.g. where the JSON stops parsing.
    """
    await page_user(request, roles=[Role.admin])
    try:
        async with read(request) as db:
            current = await conditions.current_questionnaire(db, request.match_info["code"])
    except ProblemError:
        raise await not_found(request) from None
    definition = QuestionnaireDefinition.model_validate(current.definition)
    if text is None:
        text = json.dumps(current.definition, ensure_ascii=False, indent=2)
    questions = {q.id: q for q in definition.questions}
    return await render(request, "staff/questionnaire.html", {
        "q": current, "definition": definition, "questions": questions, "text": text, "errors": errors or [],
        "problem": problem, "published": request.query.get("published")}, status=status)


async def questionnaire_page(request: web.Request) -> web.Response:
    """One questionnaire's current version, readable and as JSON."""
    return await _questionnaire_response(request)


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "—"


async def questionnaire_submit(request: web.Request) -> web.Response:
    """Publish the posted JSON as the next version of the questionnaire in the path."""
    await page_user(request, roles=[Role.admin])
    code = request.match_info["code"]
    form = await read_form(request)
    text = form.get("definition", "")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return await _questionnaire_response(request, text=text, status=422, problem=(
            N_("This is not valid JSON: line %(line)s, column %(column)s (%(reason)s)."),
            {"line": exc.lineno, "column": exc.colno, "reason": exc.msg}))
    if isinstance(data, dict):
        data.setdefault("version", 1)  # the version is assigned on publishing; leaving it out is fine
    try:
        definition = QuestionnaireDefinition.model_validate(data)
    except ValidationError as exc:
        return await _questionnaire_response(request, text=text, status=422, errors=[
            (_location(error["loc"]), error["msg"]) for error in exc.errors(include_url=False, include_input=False)])
    if definition.code != code:
        return await _questionnaire_response(request, text=text, status=422, problem=(
            N_("The code must stay %(code)s: publish a new version of this questionnaire here."), {"code": code}))
    async with tx(request) as db:
        published = await conditions.publish_questionnaire(db, definition=definition, ctx=audit_context(request),
                                                           now=utcnow())
    raise web.HTTPSeeOther(f"/clinic/questionnaires/{code}?published={published.version}")

