"""Everything the consent services need from the node's configuration, built once at start-up.

Building it early means a misconfigured trust anchor or seal key stops the start, not a patient's signing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from consent.models import SignatureLevel
from consent.rules import GatePolicy
from consent.signatures import CmsSignatureVerifier, SignatureVerifier, SubjectMatch
from consent.trust import load_trust_config
from server.keyring import KeyMaterial, SealKeys, load_seal_keys
from server.notify import EmailSender, SmsGateway, email_sender_from_settings, sms_gateway_from_settings
from server.settings import Settings


@dataclass(frozen=True)
class ConsentSetup:
    policy: GatePolicy
    seal_keys: SealKeys
    otp_key: bytes
    clinic_name: str
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Moscow"))  # the clinic's calendar
    otp_ttl: dt.timedelta = dt.timedelta(minutes=10)
    otp_attempts: int = 5
    otp_per_hour: int = 5
    font: Path | None = None
    verifier: SignatureVerifier | None = None  # None: the clinic trusts no CA, so no enhanced signatures
    signature_max_bytes: int = 262_144
    scan_max_bytes: int = 8_388_608
    email: EmailSender | None = field(default=None, compare=False)
    sms: SmsGateway | None = field(default=None, compare=False)


def policy_from_settings(settings: Settings) -> GatePolicy:
    validity = dt.timedelta(days=settings.consent_validity_days) if settings.consent_validity_days else None
    return GatePolicy(recording_enabled=settings.recording_enabled, recording_required=settings.recording_required,
                      validity=validity, required_level=SignatureLevel(settings.consent_required_level))


def verifier_from_settings(settings: Settings) -> SignatureVerifier | None:
    if not settings.consent_trust_anchors:
        return None
    trust = load_trust_config(anchor_paths=settings.consent_trust_anchors,
                              intermediate_paths=settings.consent_intermediates, crl_paths=settings.consent_crls,
                              qualified_policy_oids=frozenset(settings.consent_qualified_policy_oids),
                              subject_match=SubjectMatch(settings.consent_subject_match),
                              max_signature_bytes=settings.consent_signature_max_bytes)
    return CmsSignatureVerifier(trust)


def consent_setup(settings: Settings, key_material: KeyMaterial, *, senders: bool = True) -> ConsentSetup:
    """`senders=False` for tools that only verify (the CLI): no mail or SMS configuration is needed there."""
    return ConsentSetup(
        policy=policy_from_settings(settings), seal_keys=load_seal_keys(settings),
        otp_key=key_material.derive("consent-otp"), clinic_name=settings.clinic_name,
        zone=ZoneInfo(settings.clinic_time_zone),
        otp_ttl=dt.timedelta(seconds=settings.consent_otp_ttl_seconds), otp_attempts=settings.consent_otp_attempts,
        otp_per_hour=settings.consent_otp_per_hour, font=settings.consent_font,
        verifier=verifier_from_settings(settings), signature_max_bytes=settings.consent_signature_max_bytes,
        scan_max_bytes=settings.consent_scan_max_bytes,
        email=email_sender_from_settings(settings) if senders else None,
        sms=sms_gateway_from_settings(settings) if senders else None)
