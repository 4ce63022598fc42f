"""Consent texts over time: drafts an admin edits, versions published once and never changed again.

A new version is published as material (older consents must be signed again before the next
consultation) or not (a typo fixed: older consents still count).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from consent import rules
from consent.models import ConsentPurpose, ConsentTemplate, TemplateStatus
from consent.problems import DraftConflict, NoPublishedTemplate, TemplateImmutable
from consent.texts import default_texts
from server.audit import services as audit
from server.audit.services import AuditContext
from server.http.problems import FieldError, NotFound, ValidationFailed


async def list_templates(session: AsyncSession, *, purpose: ConsentPurpose | None = None,
                         published_only: bool = False) -> list[ConsentTemplate]:
    query = select(ConsentTemplate).order_by(ConsentTemplate.purpose, ConsentTemplate.version.desc())
    if purpose is not None:
        query = query.where(ConsentTemplate.purpose == purpose)
    if published_only:
        query = query.where(ConsentTemplate.status == TemplateStatus.published)
    return list((await session.scalars(query)).all())


async def get_template(session: AsyncSession, template_id: uuid.UUID) -> ConsentTemplate:
    template = await session.get(ConsentTemplate, template_id)
    if template is None:
        raise NotFound()
    return template


HEADING_MAX = 300  # a "## " line longer than this is not a heading; reportlab cannot keep it with what follows


def check_text(*, body_ru: str, body_en: str) -> None:
    """Refuse text the PDF cannot lay out: headings are short lines."""
    for field, body in (("body_ru", body_ru), ("body_en", body_en)):
        for number, line in enumerate(body.splitlines(), start=1):
            if line.startswith("## ") and len(line) > HEADING_MAX:
                message = f"line {number}: a heading is at most {HEADING_MAX} characters"
                raise ValidationFailed(f"{field}: {message}",
                                       errors=[FieldError(field=field, message=message, type="heading_too_long")])


async def create_draft(session: AsyncSession, *, purpose: ConsentPurpose, title_ru: str, body_ru: str,
                       title_en: str, body_en: str, ctx: AuditContext, now: dt.datetime) -> ConsentTemplate:
    """The next version number of the purpose, as a draft nobody can sign yet."""
    check_text(body_ru=body_ru, body_en=body_en)
    latest = await session.scalar(select(func.max(ConsentTemplate.version)).where(ConsentTemplate.purpose == purpose))
    template = ConsentTemplate(purpose=purpose, version=(latest or 0) + 1, status=TemplateStatus.draft,
                               title_ru=title_ru, body_ru=body_ru, title_en=title_en, body_en=body_en,
                               created_at=now, created_by_user_id=ctx.actor_user_id)
    try:  # two admins drafting at once both read the same latest version: the unique index decides
        async with session.begin_nested():
            session.add(template)
            await session.flush()
    except IntegrityError:
        raise DraftConflict() from None
    await audit.record(session, ctx=ctx, action="consent_template.drafted", object_type="consent_template",
                       object_id=template.id, detail={"purpose": purpose.value, "version": template.version}, now=now)
    return template


async def update_draft(session: AsyncSession, *, template_id: uuid.UUID, title_ru: str, body_ru: str, title_en: str,
                       body_en: str, ctx: AuditContext, now: dt.datetime) -> ConsentTemplate:
    template = await _locked(session, template_id)
    if template.status is not TemplateStatus.draft:
        raise TemplateImmutable()
    check_text(body_ru=body_ru, body_en=body_en)
    template.title_ru, template.body_ru, template.title_en, template.body_en = title_ru, body_ru, title_en, body_en
    await audit.record(session, ctx=ctx, action="consent_template.edited", object_type="consent_template",
                       object_id=template.id, now=now)
    return template


async def publish(session: AsyncSession, *, template_id: uuid.UUID, material: bool, ctx: AuditContext,
                  now: dt.datetime) -> ConsentTemplate:
    """Freeze the draft: its hash is recorded and it becomes what patients sign from now on."""
    template = await _locked(session, template_id)
    if template.status is not TemplateStatus.draft:
        raise TemplateImmutable()
    template.sha256 = rules.template_sha256(purpose=template.purpose.value, version=template.version,
                                            title_ru=template.title_ru, body_ru=template.body_ru,
                                            title_en=template.title_en, body_en=template.body_en)
    template.status, template.material = TemplateStatus.published, material
    template.published_at, template.published_by_user_id = now, ctx.actor_user_id
    await audit.record(session, ctx=ctx, action="consent_template.published", object_type="consent_template",
                       object_id=template.id, detail={"purpose": template.purpose.value, "version": template.version,
                                                      "material": material, "sha256": template.sha256}, now=now)
    return template


async def _locked(session: AsyncSession, template_id: uuid.UUID) -> ConsentTemplate:
    template = (await session.scalars(select(ConsentTemplate).where(ConsentTemplate.id == template_id)
                                      .with_for_update().execution_options(populate_existing=True))).one_or_none()
    if template is None:
        raise NotFound()
    return template


async def current(session: AsyncSession, purpose: ConsentPurpose) -> ConsentTemplate:
    """The latest published version: what a patient signs now."""
    template = (await session.scalars(select(ConsentTemplate).where(
        ConsentTemplate.purpose == purpose, ConsentTemplate.status == TemplateStatus.published)
        .order_by(ConsentTemplate.version.desc()).limit(1))).one_or_none()
    if template is None:
        raise NoPublishedTemplate()
    return template


async def minimum_versions(session: AsyncSession, *, as_of: dt.datetime | None = None) -> dict[ConsentPurpose, int]:
    """Per purpose, the oldest version a consent may have been signed under and still count: the latest
    material version (the first published one is material whatever its flag: nothing came before it). With
    `as_of`, from the versions published by then (a past call judged by the texts of its day)."""
    query = select(ConsentTemplate.purpose, ConsentTemplate.version, ConsentTemplate.material).where(
        ConsentTemplate.status == TemplateStatus.published)
    if as_of is not None:
        query = query.where(ConsentTemplate.published_at <= as_of)
    rows = (await session.execute(query)).all()
    minimum: dict[ConsentPurpose, int] = {}
    for purpose, version, _ in rows:
        minimum[purpose] = min(minimum.get(purpose, version), version)
    for purpose, version, material in rows:
        if material:
            minimum[purpose] = max(minimum[purpose], version)
    return minimum


async def seed_defaults(session: AsyncSession, *, ctx: AuditContext, now: dt.datetime) -> list[ConsentTemplate]:
    """Publish the default texts as version 1 of every purpose that has no version yet."""
    seeded = []
    for purpose in ConsentPurpose:
        if await session.scalar(select(ConsentTemplate.id).where(ConsentTemplate.purpose == purpose).limit(1)):
            continue
        texts = default_texts(purpose.value)
        draft = await create_draft(session, purpose=purpose, title_ru=texts["ru"].title, body_ru=texts["ru"].body,
                                   title_en=texts["en"].title, body_en=texts["en"].body, ctx=ctx, now=now)
        seeded.append(await publish(session, template_id=draft.id, material=True, ctx=ctx, now=now))
    return seeded
