"""Consent texts for admins: every version per purpose, drafting the next one, previewing it as the PDF patients
will sign, and publishing it (as a material change or not) after a confirmation.

A draft starts from the current published text, so an admin edits rather than retypes; published versions are
shown read-only, because the consents signed under them name their hash.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import ValidationError

from consent import schemas, signing, templates
from consent.models import ConsentPurpose, ConsentTemplate, TemplateStatus
from consent.problems import NoPublishedTemplate
from consent.texts import default_texts
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import field_errors
from server.http.principal import audit_context
from server.http.problems import NotFound, ProblemError
from web import i18n
from web.consent_pages.rendering import link, not_found, parse_uuid, render_page
from web.consent_pages.texts import STAFF_ERRORS
from web.pages import page_user, read_form

ADMINS = (Role.admin,)
HOME = "/clinic/consent-texts"
FIELDS = ("title_ru", "body_ru", "title_en", "body_en")


async def _texts_response(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    await page_user(request, roles=ADMINS)
    async with read(request) as session:
        found = await templates.list_templates(session)
    by_purpose: dict[ConsentPurpose, list[ConsentTemplate]] = {purpose: [] for purpose in ConsentPurpose}
    for template in found:
        by_purpose[template.purpose].append(template)
    drafts = {purpose: next((t for t in versions if t.status is TemplateStatus.draft), None)
              for purpose, versions in by_purpose.items()}
    return await render_page(request, "texts.html", {
        "by_purpose": by_purpose, "drafts": drafts, "asked": request.app[keys.consent].policy.asked_purposes(),
        "error": error}, status=status)


async def texts_page(request: web.Request) -> web.Response:
    """Every version of every purpose's text, newest first, with the way to draft the next one."""
    return await _texts_response(request)


async def draft_submit(request: web.Request) -> web.Response:
    """The next version of a purpose as a draft, starting from the current text (or the shipped one)."""
    await page_user(request, roles=ADMINS)
    await read_form(request, back=HOME)
    try:
        purpose = ConsentPurpose(request.match_info["purpose"])
    except ValueError:
        raise await not_found(request, back=HOME) from None
    try:
        async with tx(request) as session:
            pending = [t for t in await templates.list_templates(session, purpose=purpose)
                       if t.status is TemplateStatus.draft]
            if pending:  # a double submit, or a draft someone started: continue that one
                raise web.HTTPSeeOther(f"{HOME}/{pending[0].id}")
            try:
                current = await templates.current(session, purpose)
                texts = {"title_ru": current.title_ru, "body_ru": current.body_ru, "title_en": current.title_en,
                         "body_en": current.body_en}
            except NoPublishedTemplate:
                shipped = default_texts(purpose.value)
                texts = {"title_ru": shipped["ru"].title, "body_ru": shipped["ru"].body,
                         "title_en": shipped["en"].title, "body_en": shipped["en"].body}
            draft = await templates.create_draft(session, purpose=purpose, **texts, ctx=audit_context(request),
                                                 now=utcnow())
    except ProblemError as problem:  # another admin drafted the same version at the same moment
        return await _texts_response(request, error=_code(problem), status=problem.status)
    raise web.HTTPSeeOther(f"{HOME}/{draft.id}")


async def _load(request: web.Request) -> ConsentTemplate:
    template_id = parse_uuid(request.match_info["template_id"])
    if template_id is None:
        raise await not_found(request, back=HOME)
    try:
        async with read(request) as session:
            return await templates.get_template(session, template_id)
    except NotFound:
        raise await not_found(request, back=HOME) from None


async def _text_page(request: web.Request, *, values: dict[str, str] | None = None,
                     errors: dict[str, str] | None = None, error: str | None = None, confirm: bool | None = None,
                     status: int = 200) -> web.Response:
    """One version: a draft's form (with what was typed, and what is wrong), or a published text, read-only.

    `confirm` (the material flag chosen) shows the publishing confirmation instead of the buttons."""
    await page_user(request, roles=ADMINS)
    template = await _load(request)
    shown = values or {name: getattr(template, name) for name in FIELDS}
    return await render_page(request, "text.html", {
        "t": template, "values": shown, "errors": errors or {}, "error": error, "confirm": confirm,
        "draft": template.status is TemplateStatus.draft, "saved": request.query.get("saved") == "1",
        "published": request.query.get("published") == "1", "home": HOME}, status=status)


async def text_page(request: web.Request) -> web.Response:
    """A version of a purpose's text: a draft to edit, preview and publish, or a published one to read."""
    return await _text_page(request)


def _typed(form: dict[str, str]) -> dict[str, str]:
    """The four fields as typed, with one kind of line break (a textarea sends CRLF)."""
    return {name: form.get(name, "").replace("\r\n", "\n").replace("\r", "\n") for name in FIELDS}


async def save_submit(request: web.Request) -> web.Response:
    """Save the draft's texts; what is wrong is shown next to its field, with what was typed kept."""
    await page_user(request, roles=ADMINS)
    template = await _load(request)
    form = await read_form(request, back=f"{HOME}/{template.id}")
    values = _typed(form)
    try:
        body = schemas.TemplateTextIn.model_validate(values)
    except ValidationError as exc:
        errors = {e.field: e.message for e in field_errors(exc)}
        return await _text_page(request, values=values, errors=errors, status=422)
    try:
        async with tx(request) as session:
            await templates.update_draft(session, template_id=template.id, title_ru=body.title_ru,
                                         body_ru=body.body_ru, title_en=body.title_en, body_en=body.body_en,
                                         ctx=audit_context(request), now=utcnow())
    except ProblemError as problem:
        return await _text_page(request, values=values, error=_code(problem), status=problem.status)
    raise web.HTTPSeeOther(link(f"{HOME}/{template.id}", saved=1))


def _code(problem: ProblemError) -> str:
    return problem.code if problem.code in STAFF_ERRORS else "error"


async def publish_submit(request: web.Request) -> web.Response:
    """Publish after a confirmation that says what the choice means (an unticked box is simply not sent)."""
    await page_user(request, roles=ADMINS)
    template = await _load(request)
    form = await read_form(request, back=f"{HOME}/{template.id}")
    material = form.get("material") == "on"
    if form.get("confirmed") != "yes":
        return await _text_page(request, confirm=material)
    try:
        async with tx(request) as session:
            await templates.publish(session, template_id=template.id, material=material, ctx=audit_context(request),
                                    now=utcnow())
    except ProblemError as problem:
        return await _text_page(request, error=_code(problem), status=problem.status)
    raise web.HTTPSeeOther(link(f"{HOME}/{template.id}", published=1))


async def preview(request: web.Request) -> web.Response:
    """The PDF a patient would get from this version, with a sample patient, shown in the browser."""
    await page_user(request, roles=ADMINS)
    template = await _load(request)
    language = request.query.get("language", "ru")
    if language not in i18n.LOCALES:
        raise await not_found(request, back=HOME)
    data = await asyncio.to_thread(signing.render_preview, template, language=language,
                                   setup=request.app[keys.consent], now=utcnow())
    filename = f"preview-{template.purpose.value}-v{template.version}-{language}.pdf"
    return web.Response(body=data, content_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store"})
