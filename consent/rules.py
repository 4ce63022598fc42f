"""Pure decisions about consent: hashes and canonical forms, code checks, masking, and the gate.

No I/O and no clock: the caller passes the facts and the time, so every rule is tested on its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from consent.models import ConsentPurpose, SignatureLevel

SEALED_FIELDS = ("consent_id", "patient_id", "purpose", "template_version", "template_sha256", "document_sha256",
                 "level", "evidence_sha256", "signed_at")
PAYLOAD_VERSION = 1

# What each level proves, weakest first; a paper consent signed by hand at the clinic satisfies any level.
_LEVEL_RANK = {SignatureLevel.simple: 0, SignatureLevel.enhanced_unqualified: 1,
               SignatureLevel.enhanced_qualified: 2, SignatureLevel.in_person: 3}


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: for the strings and integers sealed here this is RFC 8785's form,
    so anyone can rebuild the bytes from the fields and check the seal with any JSON library."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def template_sha256(*, purpose: str, version: int, title_ru: str, body_ru: str, title_en: str, body_en: str) -> str:
    """The hash of what a version says, in both languages; recorded when it is published."""
    return sha256_hex(canonical_json({"purpose": purpose, "version": version, "title_ru": title_ru,
                                      "body_ru": body_ru, "title_en": title_en, "body_en": body_en}))


def timestamp(moment: dt.datetime) -> str:
    """One textual form for a sealed time (UTC, microseconds), identical on every database backend."""
    if moment.tzinfo is None:
        raise ValueError("a sealed time must be aware")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sealed_payload(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The record the clinic's key signs: exactly the sealed fields, as strings and integers."""
    missing = [name for name in SEALED_FIELDS if name not in fields]
    if missing:
        raise ValueError(f"sealed fields missing: {missing}")
    return {"v": PAYLOAD_VERSION, **{name: fields[name] for name in SEALED_FIELDS}}


def changed_fields(stored: Mapping[str, Any], sealed: Mapping[str, Any]) -> list[str]:
    """The names of the fields whose stored value differs from what was sealed."""
    return [name for name in SEALED_FIELDS if stored.get(name) != sealed.get(name)]


def otp_hash(key: bytes, *, otp_id: str, document_sha256: str, code: str) -> str:
    """A keyed hash of the code bound to its document: a database copy reveals no code (a 6-digit code's
    plain hash is reversed in a millisecond), and a code never matches another document."""
    return hmac.new(key, f"{otp_id}:{document_sha256}:{code}".encode(), hashlib.sha256).hexdigest()


def otp_matches(key: bytes, *, otp_id: str, document_sha256: str, code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(otp_hash(key, otp_id=otp_id, document_sha256=document_sha256, code=code), stored_hash)


class OtpRefusal(StrEnum):
    used = "otp_used"
    expired = "otp_expired"
    attempts = "otp_attempts_exhausted"
    wrong_document = "otp_wrong_document"


def otp_usable(*, used: bool, expires_at: dt.datetime, attempts: int, max_attempts: int, bound_sha256: str,
               document_sha256: str, now: dt.datetime) -> OtpRefusal | None:
    """Why this code can no longer sign this document, or None if it may still be tried."""
    if used:
        return OtpRefusal.used
    if bound_sha256 != document_sha256:
        return OtpRefusal.wrong_document
    if attempts >= max_attempts:
        return OtpRefusal.attempts
    if now >= expires_at:
        return OtpRefusal.expired
    return None


def mask_email(address: str) -> str:
    """Enough for the patient to recognise where the code went, too little to identify them."""
    local, _, domain = address.partition("@")
    shown = local[0] if local else ""
    if len(domain) > 48:  # fits the stored column whatever the address (e-mails may be 254 characters)
        domain = "…" + domain[-47:]
    return f"{shown}***@{domain}"


def mask_phone(number: str) -> str:
    return f"{number[:2]}******{number[-4:]}" if len(number) > 6 else "******"


def level_satisfies(level: SignatureLevel, required: SignatureLevel) -> bool:
    return _LEVEL_RANK[level] >= _LEVEL_RANK[required]


class GateProblem(StrEnum):
    missing = "missing"
    outdated = "outdated"
    withdrawn = "withdrawn"
    expired = "expired"
    level_too_low = "level_too_low"
    no_template = "no_template"  # the clinic has not published this document yet


@dataclass(frozen=True)
class GatePolicy:
    """The clinic's rules (from settings)."""

    recording_enabled: bool = True
    recording_required: bool = True
    validity: dt.timedelta | None = None
    required_level: SignatureLevel = SignatureLevel.simple

    def required_purposes(self) -> tuple[ConsentPurpose, ...]:
        needed = [ConsentPurpose.telemedicine_care, ConsentPurpose.personal_data]
        if self.recording_enabled and self.recording_required:
            needed.append(ConsentPurpose.recording)
        return tuple(needed)

    def asked_purposes(self) -> tuple[ConsentPurpose, ...]:
        """What the patient is asked to sign: the required ones, and recording whenever the clinic records."""
        asked = list(self.required_purposes())
        if self.recording_enabled and ConsentPurpose.recording not in asked:
            asked.append(ConsentPurpose.recording)
        return tuple(asked)


@dataclass(frozen=True)
class ConsentFacts:
    purpose: ConsentPurpose
    template_version: int
    level: SignatureLevel
    signed_at: dt.datetime
    withdrawn_at: dt.datetime | None


@dataclass(frozen=True)
class PurposeStatus:
    purpose: ConsentPurpose
    problem: GateProblem | None  # None: a valid consent is held
    required: bool


@dataclass(frozen=True)
class GateDecision:
    may_start: bool
    may_record: bool
    statuses: tuple[PurposeStatus, ...]

    @property
    def problems(self) -> tuple[PurposeStatus, ...]:
        return tuple(s for s in self.statuses if s.problem is not None)

    @property
    def blocking(self) -> tuple[PurposeStatus, ...]:
        return tuple(s for s in self.statuses if s.problem is not None and s.required)


def consent_problem(facts: ConsentFacts, *, minimum_version: int, policy: GatePolicy,
                    now: dt.datetime) -> GateProblem | None:
    """Why this one consent does not count now, or None if it does."""
    if facts.withdrawn_at is not None:
        return GateProblem.withdrawn
    if facts.template_version < minimum_version:
        return GateProblem.outdated
    if policy.validity is not None and now >= facts.signed_at + policy.validity:
        return GateProblem.expired
    if not level_satisfies(facts.level, policy.required_level):
        return GateProblem.level_too_low
    return None


def purpose_problem(consents: Iterable[ConsentFacts], *, minimum_version: int | None, policy: GatePolicy,
                    now: dt.datetime) -> GateProblem | None:
    """Any one valid consent suffices; otherwise the latest one's defect is the reason (none: missing).

    `minimum_version` is the latest material published version (None: nothing published for the purpose).
    """
    if minimum_version is None:
        return GateProblem.no_template
    latest: tuple[dt.datetime, GateProblem] | None = None
    for facts in consents:
        problem = consent_problem(facts, minimum_version=minimum_version, policy=policy, now=now)
        if problem is None:
            return None
        if latest is None or facts.signed_at > latest[0]:
            latest = (facts.signed_at, problem)
    return GateProblem.missing if latest is None else latest[1]


def decide(consents: Iterable[ConsentFacts], *, minimum_versions: Mapping[ConsentPurpose, int],
           policy: GatePolicy, now: dt.datetime) -> GateDecision:
    """May a consultation of this patient start now, and may it be recorded?"""
    by_purpose: dict[ConsentPurpose, list[ConsentFacts]] = {}
    for facts in consents:
        by_purpose.setdefault(facts.purpose, []).append(facts)
    required = policy.required_purposes()
    statuses = tuple(
        PurposeStatus(purpose, purpose_problem(by_purpose.get(purpose, []),
                                               minimum_version=minimum_versions.get(purpose), policy=policy, now=now),
                      purpose in required)
        for purpose in policy.asked_purposes())
    may_start = all(s.problem is None for s in statuses if s.required)
    recording_ok = any(s.purpose is ConsentPurpose.recording and s.problem is None for s in statuses)
    return GateDecision(may_start=may_start, may_record=may_start and policy.recording_enabled and recording_ok,
                        statuses=statuses)
