"""The default catalogue (seed JSON): it loads, it is complete, and its screening rules catch emergencies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.scheduling.catalogue import SeedError, load_conditions, load_questionnaires
from server.scheduling.screening import (
    AllOf,
    AnyOf,
    Comparison,
    ConditionEntry,
    QuestionnaireDefinition,
    Rule,
    RuleKind,
    evaluate,
    validate_answers,
)

CONDITIONS = load_conditions()
QUESTIONNAIRES = load_questionnaires()

# A normal reading for each unit of measurement; numbers without a unit are counts (days), benign at their minimum.
NORMAL_BY_UNIT = {"°C": 36.6, "mmHg": 125, "bpm": 72, "mmol/L": 6.0}

# Dispensary observation (PRACTICE.md): followed up remotely, after an in-person diagnosis.
CHRONIC_ICD10 = ["E11", "E78.0", "I10", "I25.9", "I25.2", "I48", "I50.9", "I69", "J44.9", "K27.9"]
ACUTE_ICD10 = ["J06.9", "J20.9", "B00.9", "N30.0", "L20.9", "L50.9", "R50.9", "K59.0", "A09"]


def _benign_answers(definition: QuestionnaireDefinition) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for question in definition.questions:
        if question.type == "yes_no":
            answers[question.id] = False
        elif question.type == "choice":
            answers[question.id] = question.choices[0].id
        elif question.unit is not None:
            assert question.unit in NORMAL_BY_UNIT, f"{definition.code}.{question.id}: no normal value for unit"
            answers[question.id] = NORMAL_BY_UNIT[question.unit]
        else:
            assert question.min is not None, f"{definition.code}.{question.id}: a count needs a minimum"
            answers[question.id] = question.min
    return answers


def _triggered(definition: QuestionnaireDefinition, **changes: Any) -> list[Rule]:
    answers = validate_answers(definition, {**_benign_answers(definition), **changes})
    return evaluate(definition, answers)


def _red_flags(rules: list[Rule]) -> list[str]:
    return [rule.id for rule in rules if rule.kind is RuleKind.red_flag]


def _temperature_questions(definition: QuestionnaireDefinition) -> list[str]:
    return [q.id for q in definition.questions if q.unit == "°C"]


def _comparisons(condition: Comparison | AllOf | AnyOf) -> list[Comparison]:
    if isinstance(condition, Comparison):
        return [condition]
    parts = condition.all if isinstance(condition, AllOf) else condition.any
    return [c for part in parts for c in _comparisons(part)]


def _by_code(code: str) -> QuestionnaireDefinition:
    return QUESTIONNAIRES[code]


ALL_CODES = sorted(QUESTIONNAIRES)
WITH_TEMPERATURE = [code for code in ALL_CODES if _temperature_questions(QUESTIONNAIRES[code])]
WITH_CHEST_PAIN = [code for code in ALL_CODES if any(q.id == "chest_pain" for q in QUESTIONNAIRES[code].questions)]


# --- Files -------------------------------------------------------------------------------------------------

def test_catalogue_every_seed_file_validates() -> None:
    seed = Path(__file__).parents[2] / "server" / "scheduling" / "seed"
    files = sorted((seed / "questionnaires").glob("*.json"))
    assert len(files) == len(QUESTIONNAIRES)
    for file in files:
        definition = QuestionnaireDefinition.model_validate_json(file.read_text(encoding="utf-8"))
        assert file.stem == definition.code
        assert definition.version == 1
    raw = json.loads((seed / "conditions.json").read_text(encoding="utf-8"))
    assert [ConditionEntry.model_validate(item) for item in raw] == CONDITIONS


def test_catalogue_invalid_condition_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "conditions.json").write_text(json.dumps([{"code": "x", "name": {"ru": "Икс"}}]), encoding="utf-8")
    with pytest.raises(SeedError, match=r"/conditions\.json: condition #0 \(x\) is invalid: name\.en"):
        load_conditions(tmp_path)


def test_catalogue_duplicate_condition_code_is_refused(tmp_path: Path) -> None:
    entry = {"code": "arvi", "name": {"ru": "ОРВИ", "en": "Cold"}, "questionnaire": "respiratory"}
    (tmp_path / "conditions.json").write_text(json.dumps([entry, entry]), encoding="utf-8")
    with pytest.raises(SeedError, match="arvi appears twice"):
        load_conditions(tmp_path)


def test_catalogue_invalid_questionnaire_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "questionnaires"
    folder.mkdir()
    body = _by_code("checkin").model_dump(mode="json")
    body["rules"][0]["when"] = {"question": "no_such_question", "op": "eq", "value": True}
    (folder / "checkin.json").write_text(json.dumps(body), encoding="utf-8")
    with pytest.raises(SeedError, match=r"questionnaires/checkin\.json: invalid questionnaire: .*no_such_question"):
        load_questionnaires(tmp_path)


def test_catalogue_questionnaire_file_named_after_its_code(tmp_path: Path) -> None:
    folder = tmp_path / "questionnaires"
    folder.mkdir()
    (folder / "other.json").write_text(_by_code("checkin").model_dump_json(), encoding="utf-8")
    with pytest.raises(SeedError, match=r"other\.json: holds questionnaire checkin"):
        load_questionnaires(tmp_path)


def test_catalogue_unreadable_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "conditions.json").write_text("[{", encoding="utf-8")
    with pytest.raises(SeedError, match=r"/conditions\.json: not readable JSON"):
        load_conditions(tmp_path)


# --- Conditions --------------------------------------------------------------------------------------------

def test_conditions_codes_are_unique() -> None:
    codes = [entry.code for entry in CONDITIONS]
    assert len(codes) == len(set(codes))


def test_conditions_count_is_within_practice() -> None:
    assert 30 <= len(CONDITIONS) <= 50


def test_conditions_name_existing_questionnaires() -> None:
    missing = {entry.code: entry.questionnaire for entry in CONDITIONS if entry.questionnaire not in QUESTIONNAIRES}
    assert missing == {}


def test_conditions_every_questionnaire_except_checkin_is_used() -> None:
    used = {entry.questionnaire for entry in CONDITIONS}
    assert set(QUESTIONNAIRES) - used == {"checkin"}
    assert "checkin" not in used


def test_conditions_have_icd10_and_both_languages() -> None:
    for entry in CONDITIONS:
        assert entry.icd10, entry.code
        assert entry.name.ru != entry.name.en, entry.code


def test_conditions_chronic_dispensary_ones_are_repeat_only() -> None:
    by_icd10 = {entry.icd10: entry for entry in CONDITIONS}
    for icd10 in CHRONIC_ICD10:
        entry = by_icd10.get(icd10)
        assert entry is not None, f"{icd10} missing"
        assert entry.allows_repeat, icd10
        assert not entry.allows_primary, icd10


def test_conditions_common_acute_ones_allow_primary() -> None:
    for icd10 in ACUTE_ICD10:
        entries = [entry for entry in CONDITIONS if entry.icd10 == icd10]
        assert entries, f"{icd10} missing"
        assert all(entry.allows_primary and entry.allows_repeat for entry in entries), icd10


def test_conditions_cover_adult_urogenital_and_children() -> None:
    urogenital = [e for e in CONDITIONS if e.questionnaire == "urogenital" and e.audience == "adult"]
    assert {e.icd10 for e in urogenital} >= {"N30.0", "N76.0", "N34.1"}
    child = {e.icd10 for e in CONDITIONS if e.audience in {"child", "any"}}
    assert {"J06.9", "R50.9", "L20.9", "L25.9", "L50.9", "K59.0", "A09"} <= child
    assert any(e.icd10 == "B02.9" and not e.allows_primary for e in CONDITIONS)


def test_conditions_children_with_fever_get_the_child_questionnaire() -> None:
    fever = [e for e in CONDITIONS if e.audience == "child" and e.icd10 in {"J06.9", "R50.9"}]
    assert len(fever) == 2
    assert {e.questionnaire for e in fever} == {"child_fever"}


# --- Questionnaires ----------------------------------------------------------------------------------------

def test_questionnaires_include_the_expected_ones() -> None:
    expected = {"checkin", "general", "respiratory", "skin", "urogenital", "digestive", "child_fever",
                "cardiovascular", "diabetes", "neuro_followup"}
    assert expected <= set(QUESTIONNAIRES)


@pytest.mark.parametrize("code", ALL_CODES)
def test_questionnaire_is_short(code: str) -> None:
    assert 4 <= len(_by_code(code).questions) <= 8


def test_questionnaire_checkin_is_short_and_screens_emergencies() -> None:
    checkin = _by_code("checkin")
    assert 3 <= len(checkin.questions) <= 5
    assert {"fever_above_39", "chest_pain", "severe_breathlessness", "stroke_signs"} <= set(
        _red_flags(checkin.rules))


@pytest.mark.parametrize("code", ALL_CODES)
def test_questionnaire_has_a_red_flag_rule(code: str) -> None:
    assert _red_flags(_by_code(code).rules)


@pytest.mark.parametrize("code", ALL_CODES)
def test_questionnaire_benign_answers_trigger_nothing(code: str) -> None:
    assert _triggered(_by_code(code)) == []


@pytest.mark.parametrize("code", ALL_CODES)
def test_questionnaire_every_rule_can_fire(code: str) -> None:
    """No rule is dead data: each fires for some single answer change or, for `all`, for all its parts."""
    definition = _by_code(code)
    questions = {q.id: q for q in definition.questions}
    for rule in definition.rules:
        changes: dict[str, Any] = {}
        for comparison in _comparisons(rule.when):
            question = questions[comparison.question]
            value = comparison.value
            if comparison.op == "in":
                assert isinstance(value, list)
                value = value[0]
            elif comparison.op in {"gt", "ge", "lt", "le"}:
                assert isinstance(value, int | float)
                value = value + 1 if comparison.op in {"gt", "ge"} else value - 1
                assert question.min is not None
                assert question.max is not None
                assert question.min <= value <= question.max, f"{rule.id}: threshold outside the bounds"
            changes[comparison.question] = value
            if not isinstance(rule.when, AllOf):
                assert rule.id in [r.id for r in _triggered(definition, **changes)], rule.id
                changes = {}
        if changes:
            assert rule.id in [r.id for r in _triggered(definition, **changes)], rule.id


@pytest.mark.parametrize("code", WITH_TEMPERATURE)
def test_questionnaire_temperature_above_39_is_a_red_flag(code: str) -> None:
    definition = _by_code(code)
    for question in _temperature_questions(definition):
        assert "fever_above_39" in _red_flags(_triggered(definition, **{question: 39.5}))
        assert _triggered(definition, **{question: 37.0}) == []
        assert _triggered(definition, **{question: 39.0}) == []


def test_questionnaire_temperature_questions_found() -> None:
    assert {"checkin", "general", "respiratory", "child_fever", "skin", "urogenital", "digestive"} <= set(
        WITH_TEMPERATURE)
    for definition in QUESTIONNAIRES.values():
        for question in definition.questions:
            if "temperature" in question.id:
                assert question.type == "number", f"{definition.code}.{question.id}"
                assert question.unit == "°C", f"{definition.code}.{question.id}"


@pytest.mark.parametrize("code", WITH_CHEST_PAIN)
def test_questionnaire_chest_pain_is_a_red_flag(code: str) -> None:
    assert "chest_pain" in _red_flags(_triggered(_by_code(code), chest_pain=True))


def test_questionnaire_chest_pain_asked_where_hearts_are_at_risk() -> None:
    assert {"checkin", "cardiovascular", "diabetes", "respiratory", "chronic_respiratory", "general"} <= set(
        WITH_CHEST_PAIN)


def test_questionnaire_infant_with_fever_is_a_red_flag() -> None:
    child = _by_code("child_fever")
    assert "infant_fever" in _red_flags(_triggered(child, infant_under_3_months=True, temperature=38.2))
    assert _triggered(child, infant_under_3_months=True, temperature=37.0) == []
    assert _triggered(child, infant_under_3_months=False, temperature=38.2) == []


def test_questionnaire_stroke_signs_each_raise_a_red_flag() -> None:
    neuro = _by_code("neuro_followup")
    for question in ("face_drooping", "limb_weakness", "speech_difficulty"):
        assert "stroke_signs" in _red_flags(_triggered(neuro, **{question: True}))
    for code in ("checkin", "cardiovascular", "general", "diabetes"):
        assert "stroke_signs" in _red_flags(_triggered(_by_code(code), stroke_signs=True))


def test_questionnaire_suicidal_thoughts_are_a_red_flag() -> None:
    for code in ("general", "neuro_followup"):
        assert "suicidal_thoughts" in _red_flags(_triggered(_by_code(code), suicidal_thoughts=True))


def test_questionnaire_severe_abdominal_pain_is_a_red_flag() -> None:
    for code in ("digestive", "urogenital"):
        assert "severe_abdominal_pain" in _red_flags(_triggered(_by_code(code), severe_abdominal_pain=True))


def test_questionnaire_drug_side_effects_recommend_in_person() -> None:
    for code in ALL_CODES:
        definition = _by_code(code)
        if any(q.id == "drug_side_effects" for q in definition.questions):
            rules = _triggered(definition, drug_side_effects=True)
            assert [(r.id, r.kind) for r in rules] == [("drug_side_effects", RuleKind.in_person)], code
            assert "очный приём" in rules[0].message.ru


def test_questionnaire_pregnancy_with_urogenital_complaints_recommends_in_person() -> None:
    urogenital = _by_code("urogenital")
    for answer in ("possible", "yes"):
        assert [r.id for r in _triggered(urogenital, pregnancy=answer)] == ["pregnancy"]


def test_questionnaire_red_flags_come_before_in_person() -> None:
    diabetes = _by_code("diabetes")
    rules = _triggered(diabetes, glucose=18.0, thirst_or_vomiting=True)
    assert [r.id for r in rules] == ["high_sugar_unwell", "high_sugar", "thirst_or_vomiting"]


@pytest.mark.parametrize("code", ALL_CODES)
def test_questionnaire_optional_readings_may_be_skipped(code: str) -> None:
    definition = _by_code(code)
    required = {q.id for q in definition.questions if q.required}
    answers = {key: value for key, value in _benign_answers(definition).items() if key in required}
    assert evaluate(definition, validate_answers(definition, answers)) == []


@pytest.mark.parametrize("code", ALL_CODES)
def test_questionnaire_red_flag_messages_say_call_103(code: str) -> None:
    for rule in _by_code(code).rules:
        if rule.kind is RuleKind.red_flag:
            assert rule.message.ru.startswith("Вызовите скорую помощь: 103 (или 112)"), rule.id
            assert rule.message.en.startswith("Call an ambulance: 103 (or 112)"), rule.id


@pytest.mark.parametrize("code", ALL_CODES)
def test_questionnaire_texts_are_bilingual(code: str) -> None:
    definition = _by_code(code)
    texts = [definition.title, *(q.text for q in definition.questions), *(r.message for r in definition.rules),
             *(c.text for q in definition.questions for c in q.choices)]
    for text in texts:
        assert any("а" <= ch <= "я" for ch in text.ru.lower()), text.ru
        assert not any("а" <= ch <= "я" for ch in text.en.lower()), text.en
