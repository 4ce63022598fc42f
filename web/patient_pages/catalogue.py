"""The conditions a patient can book for, grouped as patients look for them, and the search over them.

A patient names a reason rather than a specialty; grouping by the questionnaire a condition shares lets a search
for a symptom find every condition of its group.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.scheduling import conditions
from server.scheduling.models import ConditionVersion, Questionnaire
from server.scheduling.screening import QuestionnaireDefinition, Text

KINDS = ("primary", "repeat")
# The catalogue's groups (by the questionnaire a condition uses) in the order patients look for them.
GROUP_ORDER = ("respiratory", "child_fever", "skin", "urogenital", "digestive", "cardiovascular", "diabetes",
               "chronic_respiratory", "neuro_followup", "general")


def kinds_of(condition: ConditionVersion) -> list[str]:
    """The kinds of consultation the condition allows, primary first, so the first is the default."""
    return [kind for kind, allowed in zip(KINDS, (condition.allows_primary, condition.allows_repeat), strict=True)
            if allowed]


@dataclass(frozen=True)
class ConditionGroup:
    code: str
    title: Text  # the group's name in both languages
    conditions: list[ConditionVersion]


async def load_catalogue(session: AsyncSession) -> list[ConditionGroup]:
    """The bookable conditions, grouped by the questionnaire they share (its title names the group)."""
    found = await conditions.current_conditions(session)
    titles = {q.code: QuestionnaireDefinition.model_validate(q.definition).title
              for q in (await session.scalars(select(Questionnaire).where(Questionnaire.is_current.is_(True)))).all()}
    groups: dict[str, list[ConditionVersion]] = {}
    for condition in found:
        if condition.questionnaire_code in titles:
            groups.setdefault(condition.questionnaire_code, []).append(condition)
    order = {code: index for index, code in enumerate(GROUP_ORDER)}
    return [ConditionGroup(code, titles[code], members)
            for code, members in sorted(groups.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))]


def search_text(group: ConditionGroup, condition: ConditionVersion) -> str:
    """What a search matches: the names in both languages, the ICD-10 code, and the group's title, so that a
    symptom ("кашель", "rash") finds the conditions of its group."""
    return " ".join(text for text in (condition.name_ru, condition.name_en, condition.icd10 or "", group.title.ru,
                                      group.title.en) if text)


def matches(text: str, search: str) -> bool:
    """Whether `search` occurs in `text`, ignoring case and "ё", as patients type it either way."""
    return search.casefold().replace("ё", "е") in text.casefold().replace("ё", "е")
