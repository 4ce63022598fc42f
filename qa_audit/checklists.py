"""Checklist templates: the clinic's default seeded once, and the version new reviews are filled against.

A template is never changed in place: a new version is a new row, and each review keeps the one it was filled
against, so a past score always means what it meant."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from qa_audit.models import ChecklistTemplate
from qa_audit.rules import DEFAULT_CHECKLIST


async def seed_default(session: AsyncSession) -> ChecklistTemplate:
    """The default teleconsultation checklist, created if this version is not there yet."""
    found = (await session.scalars(select(ChecklistTemplate).where(
        ChecklistTemplate.code == DEFAULT_CHECKLIST["code"],
        ChecklistTemplate.version == DEFAULT_CHECKLIST["version"]))).one_or_none()
    if found is not None:
        return found
    template = ChecklistTemplate(code=DEFAULT_CHECKLIST["code"], version=DEFAULT_CHECKLIST["version"],
                                 title=DEFAULT_CHECKLIST["title"], items=DEFAULT_CHECKLIST["items"], active=True)
    try:
        async with session.begin_nested():  # two first runs at once: the second takes the first's row
            session.add(template)
    except IntegrityError:
        return (await session.scalars(select(ChecklistTemplate).where(
            ChecklistTemplate.code == DEFAULT_CHECKLIST["code"],
            ChecklistTemplate.version == DEFAULT_CHECKLIST["version"]))).one()
    return template


async def current(session: AsyncSession, code: str = DEFAULT_CHECKLIST["code"]) -> ChecklistTemplate:
    """The newest active version of `code`, seeding the default when the clinic has none yet."""
    found = (await session.scalars(select(ChecklistTemplate).where(
        ChecklistTemplate.code == code, ChecklistTemplate.active.is_(True))
        .order_by(ChecklistTemplate.version.desc()).limit(1))).one_or_none()
    return found if found is not None else await seed_default(session)


async def publish(session: AsyncSession, *, code: str, title: dict[str, str],
                  items: list[dict[str, Any]]) -> ChecklistTemplate:
    """A new version of `code`: the next number, active; earlier versions stay for the reviews filled on them."""
    latest = await session.scalar(select(ChecklistTemplate.version).where(ChecklistTemplate.code == code)
                                  .order_by(ChecklistTemplate.version.desc()).limit(1))
    template = ChecklistTemplate(code=code, version=(latest or 0) + 1, title=title, items=items, active=True)
    session.add(template)
    await session.flush()
    return template


async def all_versions(session: AsyncSession) -> list[ChecklistTemplate]:
    """Every version of every checklist, newest first within a code (the current one first)."""
    await current(session)  # the default exists before anyone looks
    return list((await session.scalars(select(ChecklistTemplate).order_by(
        ChecklistTemplate.code, ChecklistTemplate.version.desc()))).all())
