"""The consent rules on their own: the gate's answer for every case, codes, masking, canonical forms."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent import rules
from consent.models import ConsentPurpose, SignatureLevel
from consent.rules import ConsentFacts, GatePolicy, GateProblem

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
CARE, DATA, RECORDING = ConsentPurpose.telemedicine_care, ConsentPurpose.personal_data, ConsentPurpose.recording
CURRENT = {CARE: 1, DATA: 1, RECORDING: 1}


def facts(purpose: ConsentPurpose, *, version: int = 1, level: SignatureLevel = SignatureLevel.simple,
          signed: dt.timedelta = dt.timedelta(days=1), withdrawn: bool = False) -> ConsentFacts:
    return ConsentFacts(purpose, version, level, NOW - signed, NOW if withdrawn else None)


def all_signed(**kwargs: object) -> list[ConsentFacts]:
    return [facts(p, **kwargs) for p in (CARE, DATA, RECORDING)]  # type: ignore[arg-type]


def problems(decision: rules.GateDecision) -> dict[str, str]:
    return {s.purpose.value: s.problem.value for s in decision.statuses if s.problem is not None}


def test_everything_signed_may_start_and_record() -> None:
    decision = rules.decide(all_signed(), minimum_versions=CURRENT, policy=GatePolicy(), now=NOW)
    assert decision.may_start
    assert decision.may_record
    assert not decision.problems


def test_missing_blocks_naming_each_purpose() -> None:
    decision = rules.decide([facts(CARE)], minimum_versions=CURRENT, policy=GatePolicy(), now=NOW)
    assert not decision.may_start
    assert not decision.may_record
    assert problems(decision) == {"personal_data": "missing", "recording": "missing"}


def test_an_outdated_version_blocks_until_signed_again() -> None:
    minimum = {**CURRENT, CARE: 2}
    decision = rules.decide(all_signed(), minimum_versions=minimum, policy=GatePolicy(), now=NOW)
    assert problems(decision) == {"telemedicine_care": "outdated"}
    renewed = [*all_signed(), facts(CARE, version=2, signed=dt.timedelta(0))]
    assert rules.decide(renewed, minimum_versions=minimum, policy=GatePolicy(), now=NOW).may_start


def test_a_withdrawal_blocks_even_with_an_older_withdrawn_consent_present() -> None:
    consents = [facts(CARE, withdrawn=True), facts(DATA), facts(RECORDING)]
    decision = rules.decide(consents, minimum_versions=CURRENT, policy=GatePolicy(), now=NOW)
    assert problems(decision) == {"telemedicine_care": "withdrawn"}


def test_the_latest_consents_defect_is_the_reason() -> None:
    consents = [facts(CARE, withdrawn=True, signed=dt.timedelta(days=10)),
                facts(CARE, version=1, signed=dt.timedelta(days=1)), facts(DATA), facts(RECORDING)]
    minimum = {**CURRENT, CARE: 2}
    assert problems(rules.decide(consents, minimum_versions=minimum, policy=GatePolicy(), now=NOW)) == {
        "telemedicine_care": "outdated"}


def test_expiry_when_the_clinic_sets_a_validity() -> None:
    policy = GatePolicy(validity=dt.timedelta(days=365))
    fresh = rules.decide(all_signed(signed=dt.timedelta(days=364)), minimum_versions=CURRENT, policy=policy, now=NOW)
    old = rules.decide(all_signed(signed=dt.timedelta(days=365)), minimum_versions=CURRENT, policy=policy, now=NOW)
    assert fresh.may_start
    assert not old.may_start
    assert set(problems(old).values()) == {"expired"}


def test_the_required_level_and_paper_satisfying_any() -> None:
    policy = GatePolicy(required_level=SignatureLevel.enhanced_qualified)
    simple = rules.decide(all_signed(), minimum_versions=CURRENT, policy=policy, now=NOW)
    assert set(problems(simple).values()) == {"level_too_low"}
    unqualified = rules.decide(all_signed(level=SignatureLevel.enhanced_unqualified), minimum_versions=CURRENT,
                               policy=policy, now=NOW)
    assert not unqualified.may_start
    for level in (SignatureLevel.enhanced_qualified, SignatureLevel.in_person):
        assert rules.decide(all_signed(level=level), minimum_versions=CURRENT, policy=policy, now=NOW).may_start


def test_recording_not_required_starts_unrecorded() -> None:
    policy = GatePolicy(recording_required=False)
    decision = rules.decide([facts(CARE), facts(DATA)], minimum_versions=CURRENT, policy=policy, now=NOW)
    assert decision.may_start
    assert not decision.may_record
    recording = next(s for s in decision.statuses if s.purpose is RECORDING)
    assert recording.problem is GateProblem.missing
    assert not recording.required
    assert not decision.blocking


def test_a_clinic_that_does_not_record_never_asks_for_it() -> None:
    policy = GatePolicy(recording_enabled=False)
    decision = rules.decide([facts(CARE), facts(DATA), facts(RECORDING)], minimum_versions=CURRENT, policy=policy,
                            now=NOW)
    assert decision.may_start
    assert not decision.may_record
    assert RECORDING not in {s.purpose for s in decision.statuses}


def test_nothing_published_is_named_as_such() -> None:
    decision = rules.decide(all_signed(), minimum_versions={CARE: 1, DATA: 1}, policy=GatePolicy(), now=NOW)
    assert problems(decision) == {"recording": "no_template"}


@pytest.mark.parametrize(("used", "bound", "attempts", "expires", "expected"), [
    (False, "a", 0, NOW + dt.timedelta(minutes=1), None),
    (True, "a", 0, NOW + dt.timedelta(minutes=1), rules.OtpRefusal.used),
    (False, "b", 0, NOW + dt.timedelta(minutes=1), rules.OtpRefusal.wrong_document),
    (False, "a", 5, NOW + dt.timedelta(minutes=1), rules.OtpRefusal.attempts),
    (False, "a", 4, NOW, rules.OtpRefusal.expired),
])
def test_when_a_code_may_still_be_tried(used: bool, bound: str, attempts: int, expires: dt.datetime,
                                        expected: rules.OtpRefusal | None) -> None:
    assert rules.otp_usable(used=used, expires_at=expires, attempts=attempts, max_attempts=5, bound_sha256=bound,
                            document_sha256="a", now=NOW) is expected


def test_a_code_hash_is_keyed_and_bound_to_its_document() -> None:
    key = b"k" * 32
    stored = rules.otp_hash(key, otp_id="1", document_sha256="doc", code="123456")
    assert rules.otp_matches(key, otp_id="1", document_sha256="doc", code="123456", stored_hash=stored)
    assert not rules.otp_matches(key, otp_id="1", document_sha256="other", code="123456", stored_hash=stored)
    assert not rules.otp_matches(b"x" * 32, otp_id="1", document_sha256="doc", code="123456", stored_hash=stored)
    assert "123456" not in stored


def test_masks_show_too_little_to_identify() -> None:
    assert rules.mask_email("ivan.petrov@mail.ru") == "i***@mail.ru"
    assert rules.mask_phone("+79161234567") == "+7******4567"


def test_changed_fields_names_each_difference() -> None:
    sealed = {name: f"v-{name}" for name in rules.SEALED_FIELDS}
    assert rules.changed_fields(sealed, sealed) == []
    assert rules.changed_fields({**sealed, "level": "x", "signed_at": "y"}, sealed) == ["level", "signed_at"]


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers()), max_size=6))
def test_canonical_json_is_stable_and_parses_back(value: dict[str, object]) -> None:
    data = rules.canonical_json(value)
    assert json.loads(data) == value
    assert rules.canonical_json(dict(reversed(list(value.items())))) == data


def test_sealed_times_have_one_textual_form() -> None:
    moscow = dt.timezone(dt.timedelta(hours=3))
    assert rules.timestamp(NOW) == rules.timestamp(NOW.astimezone(moscow)) == "2026-11-22T12:00:00.000000Z"
    with pytest.raises(ValueError, match="aware"):
        rules.timestamp(NOW.replace(tzinfo=None))
