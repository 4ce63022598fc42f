"""Verifying a patient's enhanced electronic signature: a detached CMS (PKCS#7) signature over the consent PDF.

Parsing is asn1crypto's, signature maths is `cryptography`'s, and the certificate path (trust anchors, validity at a
moment, CRLs) is pyhanko-certvalidator's; this module only wires them together and turns every failure into a
`SignatureRejected` with a code the caller can store and a sentence the patient can read.
"""

from __future__ import annotations

import datetime as dt
import hmac
import warnings
from collections.abc import Iterable
from contextlib import aclosing
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import structlog
from asn1crypto import cms, core, crl, pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.ltv.poe import POEManager
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    FreshnessReqType,
    NonRevokedStatusAssertion,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import CertificateRegistry
from pyhanko_certvalidator.revinfo.archival import CRLContainer
from pyhanko_certvalidator.revinfo.manager import RevinfoManager
from pyhanko_certvalidator.validate import validate_usage

log = structlog.get_logger("telemed.consent")

SNILS_OID = "1.2.643.100.3"  # СНИЛС in the subject of Russian qualified certificates
REJECTION_CODES = frozenset({
    "empty", "too_large", "malformed", "not_detached", "digest_mismatch", "bad_signature", "unsupported_algorithm",
    "untrusted", "expired", "not_yet_valid", "key_usage", "revoked", "subject_mismatch",
})

# asn1crypto digest names -> cryptography hashes. MD5 and SHA-1 are left out on purpose: a collision-prone digest
# would let the same signature cover a different document.
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
    "sha512_224": hashes.SHA512_224, "sha512_256": hashes.SHA512_256, "sha3_224": hashes.SHA3_224,
    "sha3_256": hashes.SHA3_256, "sha3_384": hashes.SHA3_384, "sha3_512": hashes.SHA3_512,
}
# asn1crypto signature algorithm names -> (scheme, the digest the OID itself names, if any)
_SIGNATURES: dict[str, tuple[str, str | None]] = {
    "rsassa_pkcs1v15": ("rsassa_pkcs1v15", None), "rsassa_pss": ("rsassa_pss", None), "ecdsa": ("ecdsa", None),
    "ed25519": ("ed25519", None), "ed448": ("ed448", None),
    **{f"{name}_rsa": ("rsassa_pkcs1v15", name) for name in ("sha224", "sha256", "sha384", "sha512")},
    **{f"{name}_ecdsa": ("ecdsa", name)
       for name in ("sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384", "sha3_512")},
}
# Named in the message so the patient (or the clinic's support) knows why a Russian CryptoPro signature is refused.
_ALGORITHM_NAMES = {
    "1.2.643.2.2.9": "GOST R 34.11-94", "1.2.643.7.1.1.2.2": "GOST R 34.11-2012 (256 bit)",
    "1.2.643.7.1.1.2.3": "GOST R 34.11-2012 (512 bit)", "1.2.643.2.2.19": "GOST R 34.10-2001",
    "1.2.643.7.1.1.1.1": "GOST R 34.10-2012 (256 bit)", "1.2.643.7.1.1.1.2": "GOST R 34.10-2012 (512 bit)",
    "1.2.643.2.2.3": "GOST R 34.10-2001 with GOST R 34.11-94",
    "1.2.643.7.1.1.3.2": "GOST R 34.10-2012 with GOST R 34.11-2012 (256 bit)",
    "1.2.643.7.1.1.3.3": "GOST R 34.10-2012 with GOST R 34.11-2012 (512 bit)",
}
# Exceptions asn1crypto and cryptography raise on bytes that are not what they claim to be (asn1crypto parses
# lazily, so these can surface at the first access of a field, not only at load()).
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError,
                 AttributeError)  # asn1crypto's ObjectDescriptor has no .native
# ...and those `cryptography` raises on a certificate it can load but not make sense of, which are not ValueErrors.
_CERTIFICATE_ERRORS = (*_PARSE_ERRORS, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
                       CryptographyDeprecationWarning)
# A configured CRL is never too old to use: see _revocation_policy.
_CRL_NEVER_STALE = dt.timedelta(days=365 * 200)


class SubjectMatch(StrEnum):
    email = "email"
    snils = "snils"  # subject attribute 1.2.643.100.3 (SNILS, 11 digits), compared digits only


@dataclass(frozen=True)
class TrustConfig:
    anchors: tuple[bytes, ...]  # DER certificates of trusted roots
    intermediates: tuple[bytes, ...] = ()  # DER certificates usable for path building
    crls: tuple[bytes, ...] = ()  # DER CRLs; with one for the issuer configured, revocation is checked (hard fail)
    qualified_policy_oids: frozenset[str] = frozenset()  # a certificate with any of these policies is "qualified"
    subject_match: SubjectMatch = SubjectMatch.email
    max_signature_bytes: int = 256 * 1024


@dataclass(frozen=True)
class Signer:
    """Who the signature must belong to."""

    email: str
    snils: str | None = None


@dataclass(frozen=True)
class VerifiedSignature:
    subject: str  # RFC 4514 string
    issuer: str
    serial_number: str  # hex
    certificate_sha256: str  # hex of the signer certificate DER
    certificate_der: bytes
    not_before: dt.datetime  # aware UTC
    not_after: dt.datetime
    qualified: bool
    policy_oids: tuple[str, ...]
    digest_algorithm: str  # e.g. "sha256"
    signature_algorithm: str  # "rsassa_pkcs1v15", "rsassa_pss", "ecdsa", "ed25519", "ed448"
    claimed_signing_time: dt.datetime | None  # the signingTime signed attribute, if present
    signature_der: bytes  # the CMS ContentInfo as uploaded, PEM armour removed


class SignatureRejected(Exception):
    """The signature does not prove the patient signed this document; `message` is safe to show them."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REJECTION_CODES:
            raise ValueError(f"unknown signature rejection code {code!r}")
        super().__init__(code, message)  # both in args, so the exception pickles (Celery) and prints usefully
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class SignatureVerifier(Protocol):
    async def verify(self, *, document: bytes, signature: bytes, signer: Signer, at: dt.datetime) -> VerifiedSignature:
        """Return what was verified, or raise SignatureRejected."""
        ...


def _malformed(message: str = "The file is not a valid CMS (PKCS#7) signature.") -> SignatureRejected:
    return SignatureRejected("malformed", message)


def _unsupported(oid: str, name: str) -> SignatureRejected:
    label = _ALGORITHM_NAMES.get(oid, name if name != oid else "")
    described = f"{label} ({oid})" if label else oid
    return SignatureRejected("unsupported_algorithm",
                             f"The signature uses the algorithm {described}, which this service cannot verify.")


def _to_der(signature: bytes, limit: int) -> bytes:
    if not signature.strip():
        raise SignatureRejected("empty", "The signature file is empty.")
    if len(signature) > limit:
        raise SignatureRejected("too_large", f"The signature file is larger than the {limit // 1024} KiB allowed.")
    if signature[:1] == b"\x30":  # a DER SEQUENCE; PEM starts with text, and "-----BEGIN" could occur inside DER
        return signature
    try:
        armour, _headers, der = pem.unarmor(signature)
    except _PARSE_ERRORS as exc:
        raise _malformed() from exc
    if armour not in {"PKCS7", "CMS"}:
        raise _malformed(f"The file holds a PEM {armour[:40]!r} block, not a CMS (PKCS#7) signature.")
    return der


@dataclass(frozen=True)
class _Parsed:
    signer_info: cms.SignerInfo
    certificates: tuple[asn1_x509.Certificate, ...]
    digest_name: str
    digest_oid: str


def _parse(der: bytes) -> _Parsed:
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise _malformed("The file is a CMS structure, but not a signature.")
        signed = info["content"]
        encapsulated = signed["encap_content_info"]
        if encapsulated["content_type"].native != "data":
            raise _malformed("The signature is not over a plain document.")
        if not isinstance(encapsulated["content"], core.Void):
            raise SignatureRejected("not_detached", "The signature file contains a copy of the document; "
                                                    "please upload a detached signature.")
        signer_infos = signed["signer_infos"]
        if len(signer_infos) != 1:
            raise _malformed("The signature file must hold exactly one signature.")
        signer_info = signer_infos[0]
        signer_info.native  # noqa: B018 -- parse every field now, while a failure still means "malformed"
        certificates: tuple[asn1_x509.Certificate, ...] = ()
        if not isinstance(signed["certificates"], core.Void):
            certificates = tuple(choice.chosen for choice in signed["certificates"] if choice.name == "certificate")
        algorithm = signer_info["digest_algorithm"]["algorithm"]
        return _Parsed(signer_info, certificates, algorithm.native, algorithm.dotted)
    except _PARSE_ERRORS as exc:
        raise _malformed() from exc


def _single_value(attributes: cms.CMSAttributes, name: str) -> core.Asn1Value | None:
    found = [attribute for attribute in attributes if attribute["type"].native == name]
    if not found:
        return None
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise _malformed(f"The signature's {name.replace('_', ' ')} attribute is ambiguous.")
    value: core.Asn1Value = found[0]["values"][0]
    return value


def _digest(name: str, data: bytes) -> bytes:
    hasher = hashes.Hash(_DIGESTS[name]())
    hasher.update(data)
    return hasher.finalize()


def _signed_content(parsed: _Parsed, document: bytes) -> tuple[bytes, dt.datetime | None]:
    """What the signature value covers: the document itself, or the signed attributes that hash it."""
    try:
        attributes = parsed.signer_info["signed_attrs"]
        if isinstance(attributes, core.Void):
            return document, None
        content_type = _single_value(attributes, "content_type")
        message_digest = _single_value(attributes, "message_digest")
        signing_time = _single_value(attributes, "signing_time")
        if content_type is None or message_digest is None:
            raise _malformed("The signature lacks the content-type or message-digest attribute.")
        if content_type.native != "data":
            raise _malformed("The signature is not over a plain document.")
        expected = message_digest.native
        claimed = signing_time.native if signing_time is not None else None
        # The signature covers the DER SET OF the attributes, i.e. the received bytes with the [0] tag made a SET.
        covered = b"\x31" + attributes.dump()[1:]
    except _PARSE_ERRORS as exc:
        raise _malformed() from exc
    if not isinstance(expected, bytes) or not hmac.compare_digest(expected, _digest(parsed.digest_name, document)):
        raise SignatureRejected("digest_mismatch", "The signature was made over a different document, "
                                                   "not the one shown here.")
    if claimed is not None and not isinstance(claimed, dt.datetime):
        raise _malformed("The signature's signing time is not a time.")
    if claimed is not None and claimed.tzinfo is None:
        claimed = claimed.replace(tzinfo=dt.UTC)  # a GeneralizedTime without "Z" (not DER, but seen): read as UTC
    return covered, claimed.astimezone(dt.UTC) if claimed is not None else None


def _signer_certificate(parsed: _Parsed) -> asn1_x509.Certificate:
    try:
        sid = parsed.signer_info["sid"]
        for candidate in parsed.certificates:
            if sid.name == "issuer_and_serial_number":
                wanted = sid.chosen
                if candidate.issuer == wanted["issuer"] and candidate.serial_number == wanted["serial_number"].native:
                    return candidate
            elif sid.name == "subject_key_identifier" and candidate.key_identifier == sid.chosen.native:
                return candidate
    except _PARSE_ERRORS as exc:
        raise _malformed() from exc
    raise _malformed("The signature file does not include the signer's certificate.")


def _hash_for(name: str, oid: str) -> hashes.HashAlgorithm:
    if name not in _DIGESTS:
        raise _unsupported(oid, name)
    return _DIGESTS[name]()


def _verify_value(public_key: object, parsed: _Parsed, content: bytes) -> str:
    """Check the signature value with `cryptography`; returns the scheme name."""
    try:
        algorithm = parsed.signer_info["signature_algorithm"]
        name, oid = algorithm["algorithm"].native, algorithm["algorithm"].dotted
        value = parsed.signer_info["signature"].native
        if name not in _SIGNATURES:
            raise _unsupported(oid, name)
        scheme, named_digest = _SIGNATURES[name]
        digest = _hash_for(named_digest, oid) if named_digest else _hash_for(parsed.digest_name, parsed.digest_oid)
        pss: padding.PSS | None = None
        if scheme == "rsassa_pss":
            params = algorithm["parameters"]
            mgf = params["mask_gen_algorithm"]
            if mgf["algorithm"].native != "mgf1" or params["trailer_field"].native != "trailer_field_bc":
                raise _unsupported(mgf["algorithm"].dotted, mgf["algorithm"].native)
            mgf_digest = mgf["parameters"]["algorithm"]
            digest = _hash_for(params["hash_algorithm"]["algorithm"].native,
                               params["hash_algorithm"]["algorithm"].dotted)
            pss = padding.PSS(mgf=padding.MGF1(_hash_for(mgf_digest.native, mgf_digest.dotted)),
                              salt_length=params["salt_length"].native)
    except _PARSE_ERRORS as exc:
        raise _malformed() from exc
    try:
        if scheme in {"rsassa_pkcs1v15", "rsassa_pss"} and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(value, content, pss or padding.PKCS1v15(), digest)
        elif scheme == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(value, content, ec.ECDSA(digest))
        elif (scheme == "ed25519" and isinstance(public_key, ed25519.Ed25519PublicKey)) or (
                scheme == "ed448" and isinstance(public_key, ed448.Ed448PublicKey)):
            public_key.verify(value, content)  # pure EdDSA: over the content itself, no separate hash
        else:
            raise SignatureRejected("bad_signature", "The signature's algorithm does not match the certificate's key.")
    except InvalidSignature as exc:
        raise SignatureRejected("bad_signature", "The signature value does not match the certificate.") from exc
    except UnsupportedAlgorithm as exc:
        raise _unsupported(oid, name) from exc
    except (ValueError, TypeError) as exc:  # e.g. a PSS salt longer than the key allows
        raise SignatureRejected("bad_signature", "The signature value does not match the certificate.") from exc
    return scheme


@dataclass(frozen=True)
class _CertificateFacts:
    certificate: x509.Certificate
    emails: frozenset[str]  # casefolded
    snils: frozenset[str]  # digits only
    policy_oids: tuple[str, ...]


def _load_x509(der: bytes) -> x509.Certificate:
    # What cryptography only warns about today (a serial number that is not positive...) it will refuse tomorrow;
    # refuse it now, and keep the warning out of the logs.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


def _readable(certificate: asn1_x509.Certificate) -> bool:
    """Whether both parsers take the whole certificate, so nothing deeper (pyhanko) trips over it later."""
    try:
        certificate.native  # noqa: B018 -- asn1crypto parses lazily; this parses every field now
        _load_x509(certificate.dump()).extensions  # noqa: B018 -- likewise for cryptography
    except _CERTIFICATE_ERRORS:
        return False
    return True


def _facts(certificate_asn1: asn1_x509.Certificate) -> _CertificateFacts:
    if not _readable(certificate_asn1):
        raise _malformed("The signer's certificate cannot be read.")
    try:
        certificate = _load_x509(certificate_asn1.dump())
        emails = {str(attribute.value) for attribute in certificate.subject.get_attributes_for_oid(
            x509.NameOID.EMAIL_ADDRESS)}
        snils = {"".join(ch for ch in str(attribute.value) if ch.isdigit())
                 for attribute in certificate.subject.get_attributes_for_oid(x509.ObjectIdentifier(SNILS_OID))}
        try:
            alt_names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            emails.update(alt_names.get_values_for_type(x509.RFC822Name))
        except x509.ExtensionNotFound:
            pass
        try:
            policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
            policy_oids = tuple(policy.policy_identifier.dotted_string for policy in policies)
        except x509.ExtensionNotFound:
            policy_oids = ()
    except _CERTIFICATE_ERRORS as exc:
        raise _malformed("The signer's certificate cannot be read.") from exc
    return _CertificateFacts(certificate, frozenset(email.casefold() for email in emails), frozenset(snils),
                             policy_oids)


def _public_key(facts: _CertificateFacts, certificate: asn1_x509.Certificate) -> object:
    try:
        return facts.certificate.public_key()
    except UnsupportedAlgorithm as exc:
        algorithm = certificate["tbs_certificate"]["subject_public_key_info"]["algorithm"]["algorithm"]
        raise _unsupported(algorithm.dotted, algorithm.native) from exc
    except _PARSE_ERRORS as exc:
        raise _malformed("The signer's certificate cannot be read.") from exc


def _check_subject(facts: _CertificateFacts, signer: Signer, match: SubjectMatch) -> None:
    if match is SubjectMatch.snils:
        wanted = "".join(ch for ch in signer.snils or "" if ch.isdigit())
        if not wanted or wanted not in facts.snils:
            raise SignatureRejected("subject_mismatch", "The certificate's SNILS is not the patient's.")
    elif signer.email.strip().casefold() not in facts.emails:
        raise SignatureRejected("subject_mismatch", "The certificate was issued for another e-mail address, "
                                                    "not the patient's.")


def _path_rejection(exc: Exception) -> SignatureRejected:
    # Subclasses before their bases: RevokedError, ExpiredError and the rest are all PathValidationErrors.
    if isinstance(exc, RevokedError):
        return SignatureRejected("revoked", "The certificate has been revoked by its certification authority.")
    if isinstance(exc, ExpiredError):
        return SignatureRejected("expired", "The certificate, or one in its chain, had expired at the time of "
                                            "signing.")
    if isinstance(exc, NotYetValidError):
        return SignatureRejected("not_yet_valid", "The certificate, or one in its chain, was not yet valid at the "
                                                  "time of signing.")
    if isinstance(exc, InsufficientRevinfoError):
        # Only reachable when a configured CRL cannot be used (bad signature on it, unknown critical extension).
        return SignatureRejected("untrusted", "The clinic could not check whether the certificate has been revoked.")
    if isinstance(exc, DisallowedAlgorithmError):
        return SignatureRejected("untrusted", "The certificate chain uses an algorithm that is no longer secure.")
    return SignatureRejected("untrusted", "The certificate was not issued by a certification authority this "
                                          "clinic trusts.")


class CmsSignatureVerifier:
    """Detached CMS signatures (what `openssl cms -sign -binary` and e-signature tools make) over a consent PDF."""

    def __init__(self, trust: TrustConfig) -> None:
        """Parse the configuration once; raises ValueError on bytes that are not certificates or CRLs."""
        if not trust.anchors:
            # pyhanko would fall back to the OS's TLS roots, which must never vouch for a patient's signature.
            raise ValueError("at least one trust anchor is required")
        self._trust = trust
        self._anchors = [_load_certificate(der, "trust anchor") for der in trust.anchors]
        self._intermediates = [_load_certificate(der, "intermediate certificate") for der in trust.intermediates]
        self._crls = [_load_crl(der) for der in trust.crls]
        self._crl_issuers = frozenset(item.crl_data.issuer.hashable for item in self._crls)

    async def verify(self, *, document: bytes, signature: bytes, signer: Signer, at: dt.datetime) -> VerifiedSignature:
        """`at` is the moment the certificate must have been valid (the upload time when signing; the stored signing
        time when re-verifying years later)."""
        if at.utcoffset() is None:
            raise ValueError("`at` must be timezone-aware")
        at = at.astimezone(dt.UTC)
        try:
            return await self._verify(document, signature, signer, at)
        except SignatureRejected:
            raise
        except Exception as exc:
            # Uploaded bytes reach deep into three parsers; whatever slipped past the checks above is still the
            # patient's bad file, not a server error, and the log keeps the trace for us.
            log.warning("consent.signature_unexpected_error", exc_info=True)
            raise _malformed() from exc

    async def _verify(self, document: bytes, signature: bytes, signer: Signer, at: dt.datetime) -> VerifiedSignature:
        der = _to_der(signature, self._trust.max_signature_bytes)
        parsed = _parse(der)
        if parsed.digest_name not in _DIGESTS:
            raise _unsupported(parsed.digest_oid, parsed.digest_name)
        content, claimed = _signed_content(parsed, document)
        certificate = _signer_certificate(parsed)
        facts = _facts(certificate)
        scheme = _verify_value(_public_key(facts, certificate), parsed, content)
        # A bundled certificate that cannot be read is only a path-building hint lost, not a reason to refuse.
        bundled = [cert for cert in parsed.certificates if cert.sha256 != certificate.sha256 and _readable(cert)]
        await self._validate_path(certificate, bundled, at)
        _check_subject(facts, signer, self._trust.subject_match)
        return VerifiedSignature(
            subject=facts.certificate.subject.rfc4514_string(),
            issuer=facts.certificate.issuer.rfc4514_string(),
            serial_number=format(facts.certificate.serial_number, "x"),
            certificate_sha256=facts.certificate.fingerprint(hashes.SHA256()).hex(),
            certificate_der=certificate.dump(),
            not_before=facts.certificate.not_valid_before_utc,
            not_after=facts.certificate.not_valid_after_utc,
            qualified=bool(self._trust.qualified_policy_oids.intersection(facts.policy_oids)),
            policy_oids=facts.policy_oids,
            digest_algorithm=parsed.digest_name,
            signature_algorithm=scheme,
            claimed_signing_time=claimed,
            signature_der=der,
        )

    async def _validate_path(self, leaf: asn1_x509.Certificate, bundled: Iterable[asn1_x509.Certificate],
                             at: dt.datetime) -> None:
        """Chain to an anchor, valid at `at`, not revoked per the configured CRLs, allowed to sign."""
        others = [*self._intermediates, *bundled]
        registry = CertificateRegistry.build(others)
        # Certificates whose issuer has no configured CRL are asserted unrevoked (soft fail, as the issue asks);
        # the rest must be found on their issuer's CRL. The leaf is never asserted: pyhanko would then skip
        # revocation for the whole path.
        assertions = [NonRevokedStatusAssertion(cert.sha256, at) for cert in others
                      if cert.issuer.hashable not in self._crl_issuers]
        revinfo = RevinfoManager(certificate_registry=registry, poe_manager=POEManager(), crls=self._crls, ocsps=(),
                                 assertions=assertions, fetchers=None)
        context = ValidationContext(
            trust_roots=self._anchors, moment=at, allow_fetching=False, certificate_registry=registry,
            revinfo_manager=revinfo, revinfo_policy=self._revocation_policy(leaf, at))
        async with aclosing(context):
            try:
                await CertificateValidator(leaf, validation_context=context).async_validate_path()
            except (ValidationError, PathBuildingError) as exc:
                raise _path_rejection(exc) from exc
        for usage in ("digital_signature", "non_repudiation"):
            try:
                validate_usage(leaf, {usage}, set(), True)
                return
            except InvalidCertificateError:
                continue
        raise SignatureRejected("key_usage", "The certificate is not allowed to be used for electronic signatures.")

    def _revocation_policy(self, leaf: asn1_x509.Certificate, at: dt.datetime) -> CertRevTrustPolicy:
        """Which CRL checks are required, and how old a CRL may be.

        A CRL is judged by what it lists, not by its age: pyhanko's default is to use a CRL only between its
        thisUpdate and nextUpdate, which would refuse (a) re-verification years later against the CRL the clinic
        has now (issued after `at`) and (b) every new signature the day the clinic's CRL file passes its nextUpdate.
        A revocation is still only counted if its date is before `at` (pyhanko's point-in-time rule), so a
        certificate revoked after signing does not void the signature. A stale CRL is logged so operators refresh
        it, but it is no worse than no CRL, which the issue says must not fail.
        """
        if leaf.issuer.hashable in self._crl_issuers:
            ee_rule = RevocationCheckingRule.CRL_REQUIRED
            stale = [item for item in self._crls if item.crl_data.issuer.hashable == leaf.issuer.hashable
                     and (next_update := item.crl_data["tbs_cert_list"]["next_update"].native) is not None
                     and next_update < at]
            if stale:
                log.warning("consent.crl_stale", issuer=leaf.issuer.human_friendly, count=len(stale))
        else:
            ee_rule = RevocationCheckingRule.NO_CHECK
        return CertRevTrustPolicy(
            RevocationCheckingPolicy(ee_certificate_rule=ee_rule,
                                     intermediate_ca_cert_rule=RevocationCheckingRule.CRL_REQUIRED),
            freshness=_CRL_NEVER_STALE, freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION)


def _load_certificate(der: bytes, what: str) -> asn1_x509.Certificate:
    try:
        certificate = asn1_x509.Certificate.load(der, strict=True)
        certificate.native  # noqa: B018 -- parse every field now, so a bad configuration fails at startup
    except _PARSE_ERRORS as exc:
        raise ValueError(f"a configured {what} is not a DER X.509 certificate") from exc
    return certificate


def _load_crl(der: bytes) -> CRLContainer:
    try:
        certificate_list = crl.CertificateList.load(der, strict=True)
        certificate_list.native  # noqa: B018 -- parse every field now, so a bad configuration fails at startup
    except _PARSE_ERRORS as exc:
        raise ValueError("a configured CRL is not a DER X.509 CRL") from exc
    return CRLContainer(certificate_list)

