"""The clinic's trust configuration for patients' e-signatures, read from PEM or DER files at startup.

A wrong path or a file that holds something else must stop the service with a message naming the file: discovering it
when the first patient signs would look like the patient's fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from asn1crypto import pem
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from consent.signatures import SubjectMatch, TrustConfig

_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")


class TrustConfigurationError(RuntimeError):
    """The e-signature trust settings point at a missing, unreadable or wrong file."""


def load_trust_config(*, anchor_paths: Sequence[Path], intermediate_paths: Sequence[Path] = (),
                      crl_paths: Sequence[Path] = (), qualified_policy_oids: Iterable[str] = (),
                      subject_match: SubjectMatch | str = SubjectMatch.email,
                      max_signature_bytes: int = 256 * 1024) -> TrustConfig:
    """Build a TrustConfig from files; a PEM file may hold several certificates (a CA bundle)."""
    if not anchor_paths:
        raise TrustConfigurationError("At least one trust anchor (root CA certificate file) must be configured.")
    oids = frozenset(oid.strip() for oid in qualified_policy_oids if oid.strip())
    bad_oids = sorted(oid for oid in oids if not _OID.fullmatch(oid))
    if bad_oids:
        raise TrustConfigurationError(
            f"Qualified certificate policy OIDs must be dotted numbers: {', '.join(bad_oids)}")
    try:
        match = SubjectMatch(subject_match)
    except ValueError as exc:
        choices = ", ".join(item.value for item in SubjectMatch)
        raise TrustConfigurationError(f"Subject match must be one of {choices}, not {subject_match!r}.") from exc
    if max_signature_bytes <= 0:
        raise TrustConfigurationError("The maximum signature size must be a positive number of bytes.")
    return TrustConfig(
        anchors=tuple(der for path in anchor_paths for der in _read_certificates(path, "trust anchor")),
        intermediates=tuple(der for path in intermediate_paths
                            for der in _read_certificates(path, "intermediate certificate")),
        crls=tuple(der for path in crl_paths for der in _read_crls(path)),
        qualified_policy_oids=oids,
        subject_match=match,
        max_signature_bytes=max_signature_bytes,
    )


def _read(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TrustConfigurationError(f"Cannot read the {what} file {path}: {exc.strerror or exc}.") from exc
    if not data.strip():
        raise TrustConfigurationError(f"The {what} file {path} is empty.")
    return data


def _blocks(data: bytes, path: Path, what: str, armours: set[str]) -> list[bytes]:
    """DER as is, or every PEM block of the expected kind."""
    if not pem.detect(data):
        return [data]
    try:
        blocks = [der for armour, _headers, der in pem.unarmor(data, multiple=True) if armour in armours]
    except ValueError as exc:
        raise TrustConfigurationError(f"The {what} file {path} is not valid PEM: {exc}") from exc
    if not blocks:
        raise TrustConfigurationError(f"The {what} file {path} holds no {' or '.join(sorted(armours))} PEM block.")
    return blocks


def _read_certificates(path: Path, what: str) -> list[bytes]:
    certificates = []
    for der in _blocks(_read(path, what), path, what, {"CERTIFICATE"}):
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise TrustConfigurationError(f"The {what} file {path} does not hold an X.509 certificate "
                                          "in PEM or DER form.") from exc
        certificates.append(certificate.public_bytes(Encoding.DER))
    return certificates


def _read_crls(path: Path) -> list[bytes]:
    crls = []
    for der in _blocks(_read(path, "CRL"), path, "CRL", {"X509 CRL"}):
        try:
            crls.append(x509.load_der_x509_crl(der).public_bytes(Encoding.DER))
        except ValueError as exc:
            raise TrustConfigurationError(
                f"The CRL file {path} does not hold an X.509 CRL in PEM or DER form.") from exc
    return crls
