"""The enhanced e-signature verifier against real `openssl cms -sign` output and a throwaway PKI."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from consent.signatures import (
    CmsSignatureVerifier,
    SignatureRejected,
    SignatureVerifier,
    Signer,
    SubjectMatch,
    TrustConfig,
    VerifiedSignature,
)
from consent.trust import TrustConfigurationError, load_trust_config
from tests.pki import (
    OTHER_POLICY,
    QUALIFIED_POLICY,
    Issued,
    KeyType,
    KeyUsageProfile,
    Pki,
    make_ca,
    make_crl,
    make_end_entity,
    make_pki,
    sign_document,
    utcnow,
)

DOCUMENT = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n" + os.urandom(4096) + b"\n%%EOF\n"
PATIENT = Signer(email="patient@example.org")
GOST_DIGEST = "1.2.643.7.1.1.2.2"  # GOST R 34.11-2012 (Streebog), 256 bit
GOST_SIGNATURE = "1.2.643.7.1.1.1.1"  # GOST R 34.10-2012, 256 bit


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="module")
def patient(pki: Pki) -> Issued:
    return pki.patient(email="Patient@Example.org", policies=[QUALIFIED_POLICY])


@pytest.fixture(scope="module")
def signature(pki: Pki, patient: Issued, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One valid DER signature, shared by the tests that only read it or break it."""
    return sign_document(DOCUMENT, patient, tmp_path_factory.mktemp("signed"), chain=pki.intermediate)


async def verify(trust: TrustConfig, signature: bytes, *, signer: Signer = PATIENT, document: bytes = DOCUMENT,
                 at: dt.datetime | None = None) -> VerifiedSignature:
    verifier: SignatureVerifier = CmsSignatureVerifier(trust)
    return await verifier.verify(document=document, signature=signature, signer=signer, at=at or utcnow())


async def rejection(trust: TrustConfig, signature: bytes, **options: Any) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as caught:
        await verify(trust, signature, **options)
    return caught.value


def edit(signature: bytes, change: Callable[[cms.SignerInfo], None]) -> bytes:
    """Re-encode the signature after changing its SignerInfo, as a forger or a foreign tool would."""
    info = cms.ContentInfo.load(signature)
    change(info["content"]["signer_infos"][0])
    return info.dump(force=True)


# --- accepted signatures ---------------------------------------------------------------------------------------


async def test_verify_accepts_rsa_signature_and_reports_the_certificate(pki: Pki, patient: Issued,
                                                                        signature: bytes) -> None:
    verified = await verify(pki.trust(qualified_policy_oids=frozenset({QUALIFIED_POLICY})), signature)

    assert "CN=Test Patient" in verified.subject
    assert "Patient@Example.org" in verified.subject
    assert verified.issuer == "CN=Test Clinic Issuing CA,O=Test Clinic PKI"
    assert verified.serial_number == format(patient.serial_number, "x")
    assert verified.certificate_der == patient.der
    assert verified.certificate_sha256 == hashlib.sha256(patient.der).hexdigest()
    assert verified.not_before == patient.certificate.not_valid_before_utc
    assert verified.not_after == patient.certificate.not_valid_after_utc
    assert verified.qualified is True
    assert verified.policy_oids == (QUALIFIED_POLICY,)
    assert verified.digest_algorithm == "sha256"
    assert verified.signature_algorithm == "rsassa_pkcs1v15"
    assert verified.claimed_signing_time is not None
    assert verified.claimed_signing_time.tzinfo is not None
    assert abs(verified.claimed_signing_time - utcnow()) < dt.timedelta(minutes=5)
    assert verified.signature_der == signature


async def test_verify_reports_unqualified_when_the_policy_is_not_configured(pki: Pki, tmp_path: Path,
                                                                           signature: bytes) -> None:
    assert (await verify(pki.trust(qualified_policy_oids=frozenset({OTHER_POLICY})), signature)).qualified is False
    assert (await verify(pki.trust(), signature)).qualified is False
    plain = sign_document(DOCUMENT, pki.patient(), tmp_path, chain=pki.intermediate)
    verified = await verify(pki.trust(qualified_policy_oids=frozenset({QUALIFIED_POLICY})), plain)
    assert verified.qualified is False
    assert verified.policy_oids == ()


async def test_verify_accepts_ec_signature(pki: Pki, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, pki.patient(key_type=KeyType.ec, policies=[QUALIFIED_POLICY]), tmp_path,
                           chain=pki.intermediate)

    verified = await verify(pki.trust(qualified_policy_oids=frozenset({QUALIFIED_POLICY})), signed)

    assert verified.signature_algorithm == "ecdsa"
    assert verified.qualified is True


async def test_verify_accepts_ec_chain_and_sha384(tmp_path: Path) -> None:
    ec_pki = make_pki("EC Clinic", key_type=KeyType.ec)
    signed = sign_document(DOCUMENT, ec_pki.patient(key_type=KeyType.ec), tmp_path, chain=ec_pki.intermediate,
                           digest="sha384")

    verified = await verify(ec_pki.trust(), signed)

    assert verified.digest_algorithm == "sha384"


async def test_verify_accepts_ed25519_signature(pki: Pki, signature: bytes) -> None:
    # openssl 3.0 cannot make an Ed25519 CMS, so re-sign openssl's structure the way RFC 8419 says.
    ed_patient = pki.patient(key_type=KeyType.ed25519)
    certificate = asn1_x509.Certificate.load(ed_patient.der)
    assert isinstance(ed_patient.key, ed25519.Ed25519PrivateKey)
    info = cms.ContentInfo.load(signature)
    info["content"]["certificates"] = [cms.CertificateChoices(name="certificate", value=certificate)]
    signer_info = info["content"]["signer_infos"][0]
    signer_info["sid"] = cms.SignerIdentifier(name="issuer_and_serial_number", value={
        "issuer": certificate.issuer, "serial_number": certificate.serial_number})
    signer_info["digest_algorithm"] = {"algorithm": "sha512"}
    for attribute in signer_info["signed_attrs"]:
        if attribute["type"].native == "message_digest":
            attribute["values"] = [hashlib.sha512(DOCUMENT).digest()]
    signer_info["signature_algorithm"] = {"algorithm": "ed25519"}
    signer_info["signature"] = ed_patient.key.sign(b"\x31" + signer_info["signed_attrs"].dump(force=True)[1:])

    verified = await verify(pki.trust(), info.dump(force=True))

    assert (verified.signature_algorithm, verified.digest_algorithm) == ("ed25519", "sha512")


async def test_verify_accepts_rsa_pss_signature(pki: Pki, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, pki.patient(), tmp_path, chain=pki.intermediate,
                           extra_args=["-keyopt", "rsa_padding_mode:pss"])

    assert (await verify(pki.trust(), signed)).signature_algorithm == "rsassa_pss"


async def test_verify_accepts_pem_output(pki: Pki, patient: Issued, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, patient, tmp_path, chain=pki.intermediate, der=False)
    assert signed.startswith(b"-----BEGIN CMS-----")

    verified = await verify(pki.trust(), signed)

    body = b"".join(line for line in signed.splitlines() if not line.startswith(b"-----"))
    assert verified.signature_der == base64.b64decode(body)
    pkcs7 = signed.replace(b"BEGIN CMS", b"BEGIN PKCS7").replace(b"END CMS", b"END PKCS7")
    assert (await verify(pki.trust(), pkcs7)).signature_der == verified.signature_der


async def test_verify_accepts_signature_without_signed_attributes(pki: Pki, patient: Issued, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, patient, tmp_path, chain=pki.intermediate, signed_attributes=False)

    verified = await verify(pki.trust(), signed)

    assert verified.claimed_signing_time is None
    rejected = await rejection(pki.trust(), signed, document=DOCUMENT + b" ")
    assert rejected.code == "bad_signature"


async def test_verify_accepts_signer_identified_by_key_identifier(pki: Pki, patient: Issued, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, patient, tmp_path, chain=pki.intermediate, extra_args=["-keyid"])

    assert (await verify(pki.trust(), signed)).certificate_der == patient.der


@pytest.mark.parametrize(("bundled", "configured"), [(True, False), (False, True)])
async def test_verify_builds_the_path_from_bundled_or_configured_intermediates(
        pki: Pki, patient: Issued, tmp_path: Path, bundled: bool, configured: bool) -> None:
    signed = sign_document(DOCUMENT, patient, tmp_path, chain=pki.intermediate if bundled else None)
    trust = pki.trust(intermediates=(pki.intermediate.der,) if configured else ())

    assert (await verify(trust, signed)).issuer.startswith("CN=Test Clinic Issuing CA")


async def test_verify_without_any_intermediate_is_untrusted(pki: Pki, patient: Issued, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, patient, tmp_path)

    assert (await rejection(pki.trust(intermediates=()), signed)).code == "untrusted"


# --- the document and the signature value ----------------------------------------------------------------------


async def test_verify_rejects_a_changed_document(pki: Pki, signature: bytes) -> None:
    changed = bytearray(DOCUMENT)
    changed[100] ^= 0x01

    rejected = await rejection(pki.trust(), signature, document=bytes(changed))

    assert rejected.code == "digest_mismatch"


async def test_verify_rejects_a_tampered_signature_value(pki: Pki, signature: bytes) -> None:
    def flip(signer_info: cms.SignerInfo) -> None:
        value = bytearray(signer_info["signature"].native)
        value[10] ^= 0xFF
        signer_info["signature"] = bytes(value)

    assert (await verify(pki.trust(), edit(signature, lambda _: None))).signature_der  # re-encoding alone is harmless
    assert (await rejection(pki.trust(), edit(signature, flip))).code == "bad_signature"


async def test_verify_rejects_signature_by_another_key(pki: Pki, patient: Issued, tmp_path: Path) -> None:
    impostor = pki.patient(key_type=KeyType.rsa, email="patient@example.org")
    signed = sign_document(DOCUMENT, impostor, tmp_path / "impostor", chain=pki.intermediate)
    # The impostor's signature presented with the patient's certificate in its place.
    certificate = asn1_x509.Certificate.load(patient.der)
    info = cms.ContentInfo.load(signed)
    info["content"]["certificates"] = [cms.CertificateChoices(name="certificate", value=certificate)]
    info["content"]["signer_infos"][0]["sid"] = cms.SignerIdentifier(name="issuer_and_serial_number", value={
        "issuer": certificate.issuer, "serial_number": patient.serial_number})

    assert (await rejection(pki.trust(), info.dump(force=True), signer=Signer("Patient@Example.org"))).code == \
        "bad_signature"


@pytest.mark.parametrize(("digest", "signature_algorithm", "named"), [
    (GOST_DIGEST, GOST_SIGNATURE, GOST_DIGEST),
    (None, GOST_SIGNATURE, GOST_SIGNATURE),
    ("1.2.3.4.5", None, "1.2.3.4.5"),
    ("sha1", None, "sha1"),
])
async def test_verify_names_algorithms_it_cannot_verify(pki: Pki, signature: bytes, digest: str | None,
                                                       signature_algorithm: str | None, named: str) -> None:
    def swap(signer_info: cms.SignerInfo) -> None:
        if digest:
            signer_info["digest_algorithm"] = {"algorithm": digest}
        if signature_algorithm:
            signer_info["signature_algorithm"] = {"algorithm": signature_algorithm}

    rejected = await rejection(pki.trust(), edit(signature, swap))

    assert rejected.code == "unsupported_algorithm"
    assert named in rejected.message


async def test_verify_names_gost_in_plain_words(pki: Pki, signature: bytes) -> None:
    def swap(signer_info: cms.SignerInfo) -> None:
        signer_info["digest_algorithm"] = {"algorithm": GOST_DIGEST}

    assert "GOST R 34.11-2012" in (await rejection(pki.trust(), edit(signature, swap))).message


async def test_verify_names_a_certificate_key_it_cannot_use(pki: Pki, signature: bytes) -> None:
    info = cms.ContentInfo.load(signature)
    for choice in info["content"]["certificates"]:
        if "Test Patient" in choice.chosen.subject.human_friendly:
            choice.chosen["tbs_certificate"]["subject_public_key_info"]["algorithm"] = {"algorithm": GOST_SIGNATURE}

    rejected = await rejection(pki.trust(), info.dump(force=True), signer=Signer("Patient@Example.org"))

    assert rejected.code == "unsupported_algorithm"
    assert GOST_SIGNATURE in rejected.message


# --- the certificate -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("validity", "code"), [
    ({"not_before": -400, "not_after": -1}, "expired"),
    ({"not_before": 1, "not_after": 30}, "not_yet_valid"),
])
async def test_verify_rejects_certificate_outside_its_validity(pki: Pki, tmp_path: Path, validity: dict[str, int],
                                                               code: str) -> None:
    now = utcnow()
    certificate = pki.patient(**{key: now + dt.timedelta(days=days) for key, days in validity.items()})
    signed = sign_document(DOCUMENT, certificate, tmp_path, chain=pki.intermediate)

    assert (await rejection(pki.trust(), signed)).code == code


async def test_verify_rejects_certificate_without_signing_key_usage(pki: Pki, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, pki.patient(key_usage=KeyUsageProfile.encipherment), tmp_path,
                           chain=pki.intermediate)

    assert (await rejection(pki.trust(), signed)).code == "key_usage"


async def test_verify_rejects_certificate_from_an_unrelated_ca(tmp_path: Path) -> None:
    clinic, stranger = make_pki("Clinic"), make_pki("Elsewhere")
    signed = sign_document(DOCUMENT, stranger.patient(), tmp_path, chain=stranger.intermediate)

    assert (await rejection(clinic.trust(), signed)).code == "untrusted"
    assert (await rejection(clinic.trust(intermediates=(stranger.intermediate.der,)), signed)).code == "untrusted"


async def test_verify_rejects_self_signed_certificate(pki: Pki, tmp_path: Path) -> None:
    homemade = make_ca("Patient Self-Signed")
    signed = sign_document(DOCUMENT, homemade, tmp_path)

    assert (await rejection(pki.trust(), signed)).code == "untrusted"


async def test_verify_checks_revocation_only_where_a_crl_is_configured(pki: Pki, patient: Issued,
                                                                       signature: bytes) -> None:
    revoked = pki.crl(revoked=[patient.serial_number])
    clean = pki.crl(revoked=[patient.serial_number + 1])

    assert (await rejection(pki.trust(crls=(revoked,)), signature)).code == "revoked"
    assert (await verify(pki.trust(crls=(clean,)), signature)).subject
    assert (await verify(pki.trust(), signature)).subject  # no CRL: soft fail, as asked


async def test_verify_checks_revocation_of_the_intermediate_against_the_roots_crl(pki: Pki, signature: bytes) -> None:
    arl = make_crl(pki.root, revoked=[pki.intermediate.serial_number])

    assert (await rejection(pki.trust(crls=(arl,)), signature)).code == "revoked"
    assert (await verify(pki.trust(crls=(make_crl(pki.root),)), signature)).subject


async def test_verify_refuses_a_crl_signed_by_the_wrong_key(pki: Pki, signature: bytes) -> None:
    forger = make_pki("Test Clinic")  # same names, different keys
    forged = forger.crl()

    rejected = await rejection(pki.trust(crls=(forged,)), signature)

    assert rejected.code == "untrusted"
    assert "revoked" in rejected.message


async def test_revocation_after_the_signing_moment_does_not_void_the_signature(pki: Pki, patient: Issued,
                                                                                 signature: bytes) -> None:
    now = utcnow()
    later = pki.crl(revoked=[patient.serial_number], revoked_at=now + dt.timedelta(days=30),
                    this_update=now + dt.timedelta(days=31))

    # Years later the clinic holds a newer CRL; the signature made before the revocation still stands...
    assert (await verify(pki.trust(crls=(later,)), signature, at=now)).subject
    # ...and one made after it does not.
    assert (await rejection(pki.trust(crls=(later,)), signature, at=now + dt.timedelta(days=60))).code == "revoked"


async def test_a_stale_crl_is_still_honoured_and_logged(pki: Pki, patient: Issued, signature: bytes) -> None:
    now = utcnow()
    old = {"this_update": now - dt.timedelta(days=20), "next_update": now - dt.timedelta(days=13)}
    stale_revoked = pki.crl(revoked=[patient.serial_number], revoked_at=now - dt.timedelta(days=20), **old)
    stale_clean = pki.crl(**old)

    assert (await rejection(pki.trust(crls=(stale_revoked,)), signature)).code == "revoked"
    with capture_logs() as logs:
        assert (await verify(pki.trust(crls=(stale_clean,)), signature)).subject
    assert [entry["event"] for entry in logs] == ["consent.crl_stale"]


async def test_reverification_years_later_uses_the_signing_moment(pki: Pki, tmp_path: Path) -> None:
    now = utcnow()
    signed_at = now - dt.timedelta(days=10)
    certificate = pki.patient(not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    signed = sign_document(DOCUMENT, certificate, tmp_path, chain=pki.intermediate)
    # The CRL the clinic had when the patient signed (its nextUpdate long past today), and one issued much later.
    then = pki.crl(this_update=signed_at - dt.timedelta(days=1), next_update=signed_at + dt.timedelta(days=6))
    later = pki.crl(revoked=[certificate.serial_number + 1])

    with capture_logs() as logs:
        for crl in (then, later):
            assert (await verify(pki.trust(crls=(crl,)), signed, at=signed_at)).serial_number
    assert logs == []
    assert (await rejection(pki.trust(crls=(then,)), signed, at=now)).code == "expired"
    assert (await rejection(pki.trust(), signed, at=now - dt.timedelta(days=31))).code == "not_yet_valid"


# --- whose certificate -----------------------------------------------------------------------------------------


async def test_verify_matches_email_case_insensitively(pki: Pki, signature: bytes) -> None:
    assert (await verify(pki.trust(), signature, signer=Signer(email=" PATIENT@example.ORG "))).subject

    rejected = await rejection(pki.trust(), signature, signer=Signer(email="someone.else@example.org"))

    assert rejected.code == "subject_mismatch"
    assert "Patient@Example.org" not in rejected.message


@pytest.mark.parametrize("in_subject", [True, False])
async def test_verify_matches_email_in_subject_or_alt_name(pki: Pki, tmp_path: Path, in_subject: bool) -> None:
    certificate = make_end_entity(pki.intermediate, email="one@example.org", key=pki.patient_key,
                                  email_in_subject=in_subject, email_in_alt_name=not in_subject)
    signed = sign_document(DOCUMENT, certificate, tmp_path, chain=pki.intermediate)

    verified = await verify(pki.trust(), signed, signer=Signer(email="ONE@example.org"))

    assert ("one@example.org" in verified.subject) is in_subject


async def test_verify_matches_snils_digits_only(pki: Pki, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, pki.patient(email=None, snils="12345678901"), tmp_path, chain=pki.intermediate)
    trust = pki.trust(subject_match=SubjectMatch.snils)

    verified = await verify(trust, signed, signer=Signer(email="patient@example.org", snils="123-456-789 01"))

    assert "1.2.643.100.3=12345678901" in verified.subject
    for other in ("123-456-789 02", None):
        rejected = await rejection(trust, signed, signer=Signer(email="patient@example.org", snils=other))
        assert rejected.code == "subject_mismatch"
    # The e-mail is not what the clinic matches on in this mode.
    assert (await rejection(pki.trust(), signed)).code == "subject_mismatch"


# --- the file itself -------------------------------------------------------------------------------------------


async def test_verify_rejects_signature_that_embeds_the_document(pki: Pki, patient: Issued, tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, patient, tmp_path, chain=pki.intermediate, detached=False)

    assert (await rejection(pki.trust(), signed)).code == "not_detached"


@pytest.mark.parametrize(("payload", "code"), [
    (b"", "empty"),
    (b" \r\n\t", "empty"),
    (b"%PDF-1.7 this is the document, not a signature", "malformed"),
    (b"\x30\x03\x02\x01\x01", "malformed"),
    (b"-----BEGIN CMS-----\n!!!!\n-----END CMS-----\n", "malformed"),
    (b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "malformed"),
])
async def test_verify_rejects_files_that_are_not_signatures(pki: Pki, payload: bytes, code: str) -> None:
    assert (await rejection(pki.trust(), payload)).code == code


async def test_verify_rejects_trailing_bytes(pki: Pki, signature: bytes) -> None:
    assert (await rejection(pki.trust(), signature + b"\x00")).code == "malformed"


async def test_verify_rejects_oversized_signature_before_parsing(pki: Pki, signature: bytes) -> None:
    rejected = await rejection(pki.trust(max_signature_bytes=1024), signature)

    assert rejected.code == "too_large"
    assert "1 KiB" in rejected.message


async def test_verify_rejects_signature_without_the_signers_certificate(pki: Pki, patient: Issued,
                                                                        tmp_path: Path) -> None:
    signed = sign_document(DOCUMENT, patient, tmp_path, chain=pki.intermediate, extra_args=["-nocerts"])

    assert (await rejection(pki.trust(), signed)).code == "malformed"


async def test_verify_rejects_two_signers(pki: Pki, patient: Issued, tmp_path: Path) -> None:
    second_cert, second_key = pki.patient(key_type=KeyType.ec).write(tmp_path, "second")
    signed = sign_document(DOCUMENT, patient, tmp_path, chain=pki.intermediate,
                           extra_args=["-signer", str(second_cert), "-inkey", str(second_key)])

    assert (await rejection(pki.trust(), signed)).code == "malformed"


async def test_verify_refuses_a_naive_moment(pki: Pki, signature: bytes) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await verify(pki.trust(), signature, at=dt.datetime(2030, 1, 1))  # noqa: DTZ001 -- the mistake under test


def _outcome(trust: TrustConfig, payload: bytes) -> str:
    """Verify in a fresh loop (hypothesis drives a sync test) and name the outcome; anything else propagates."""
    try:
        asyncio.run(verify(trust, payload))
    except SignatureRejected as rejected:
        return rejected.code  # SignatureRejected itself refuses codes outside REJECTION_CODES
    return "accepted"


_fuzz = settings(max_examples=200, deadline=None)


@_fuzz
@given(payload=st.binary(max_size=2048))
def test_random_bytes_are_only_ever_rejected(pki: Pki, payload: bytes) -> None:
    with capture_logs() as logs:
        assert _outcome(pki.trust(), payload) != "accepted"
    assert logs == []  # handled on purpose, not by the last-resort net


@_fuzz
@given(data=st.data())
def test_mutated_signatures_raise_nothing_but_rejections(pki: Pki, signature: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(signature) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    mutated = bytearray(signature)
    mutated[position] ^= flip

    with capture_logs() as logs:
        _outcome(pki.trust(), bytes(mutated))
    assert logs == []


# --- the exception and the configuration -----------------------------------------------------------------------


def test_signature_rejected_keeps_code_and_message_across_pickling() -> None:
    rejected = pickle.loads(pickle.dumps(SignatureRejected("revoked", "The certificate has been revoked.")))  # noqa: S301 -- our own bytes

    assert (rejected.code, rejected.message) == ("revoked", "The certificate has been revoked.")
    with pytest.raises(ValueError, match="unknown"):
        SignatureRejected("nope", "typo in a code")


def test_verifier_needs_a_trust_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        CmsSignatureVerifier(TrustConfig(anchors=()))
    with pytest.raises(ValueError, match="anchor"):
        CmsSignatureVerifier(TrustConfig(anchors=(b"not a certificate",)))


async def test_load_trust_config_reads_pem_bundles_and_der(pki: Pki, patient: Issued, signature: bytes,
                                                         tmp_path: Path) -> None:
    other = make_pki("Second Clinic")
    bundle = tmp_path / "anchors.pem"
    bundle.write_bytes(b"# the clinic's roots\n" + other.root.pem + pki.root.pem)
    intermediate = tmp_path / "issuing.der"
    intermediate.write_bytes(pki.intermediate.der)
    crl_pem = tmp_path / "issuing.crl"
    crl_pem.write_bytes(x509.load_der_x509_crl(pki.crl(revoked=[patient.serial_number])).public_bytes(Encoding.PEM))

    trust = load_trust_config(anchor_paths=[bundle], intermediate_paths=[intermediate], crl_paths=[crl_pem],
                              qualified_policy_oids=[QUALIFIED_POLICY], subject_match="snils",
                              max_signature_bytes=4096)

    assert trust.anchors == (other.root.der, pki.root.der)
    assert trust.intermediates == (pki.intermediate.der,)
    assert trust.qualified_policy_oids == frozenset({QUALIFIED_POLICY})
    assert trust.subject_match is SubjectMatch.snils
    assert (trust.max_signature_bytes, len(trust.crls)) == (4096, 1)
    assert (await rejection(trust, signature)).code == "revoked"


def test_load_trust_config_names_the_file_that_is_wrong(pki: Pki, tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(pki.root.pem)
    missing, garbage, key = tmp_path / "missing.pem", tmp_path / "garbage.der", tmp_path / "key.pem"
    garbage.write_bytes(b"\x30\x00 not a certificate")
    key.write_bytes(pki.root.key_pem)

    for anchors in ([missing], [garbage], [key]):
        with pytest.raises(TrustConfigurationError, match=re.escape(str(anchors[0]))):
            load_trust_config(anchor_paths=anchors)
    with pytest.raises(TrustConfigurationError, match=re.escape(str(garbage))):
        load_trust_config(anchor_paths=[root], crl_paths=[garbage])
    with pytest.raises(TrustConfigurationError, match="trust anchor"):
        load_trust_config(anchor_paths=[])
    with pytest.raises(TrustConfigurationError, match="dotted"):
        load_trust_config(anchor_paths=[root], qualified_policy_oids=["КС1"])
    with pytest.raises(TrustConfigurationError, match="email, snils"):
        load_trust_config(anchor_paths=[root], subject_match="name")
