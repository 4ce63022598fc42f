"""A throwaway PKI for tests: a clinic root, an issuing CA, patient certificates, CRLs, and real `openssl cms` signing.

Everything is made locally with `cryptography`; the signatures come from the openssl CLI so the verifier is tested
against what a patient's tool really produces, not against our own idea of CMS.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from consent.signatures import SNILS_OID, SubjectMatch, TrustConfig

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

OPENSSL = "/usr/bin/openssl"
# Certificate policy OIDs of two Russian qualified-signature classes (КС1, КС2): tests configure one, not the other.
QUALIFIED_POLICY = "1.2.643.100.113.1"
OTHER_POLICY = "1.2.643.100.113.2"


class KeyType(StrEnum):
    rsa = "rsa"
    ec = "ec"
    ed25519 = "ed25519"  # openssl 3.0's `cms -sign` cannot use it; tests build such CMS with asn1crypto


class KeyUsageProfile(StrEnum):
    signing = "signing"  # digitalSignature + nonRepudiation, what signing certificates carry
    encipherment = "encipherment"  # keyEncipherment only: a certificate that must not sign


def utcnow() -> dt.datetime:
    """Certificates are made relative to the real clock; openssl stamps signingTime with it too."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_key(key_type: KeyType = KeyType.rsa) -> PrivateKey:
    """RSA-2048 (what most patients' tools make), EC P-256 or Ed25519."""
    if key_type is KeyType.ec:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.ed25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _digest_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()  # EdDSA hashes internally


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def serial_number(self) -> int:
        return self.certificate.serial_number

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write `<stem>.crt.pem` and `<stem>.key.pem`, the files `openssl cms -sign` takes."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{stem}.crt.pem", directory / f"{stem}.key.pem"
        cert_path.write_bytes(self.pem)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path


def _key_identifiers(builder: x509.CertificateBuilder, key: PrivateKey,
                     issuer: Issued | None) -> x509.CertificateBuilder:
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    issuer_public = (issuer.key if issuer else key).public_key()
    return builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)


def _key_usage(*, digital_signature: bool = False, content_commitment: bool = False, key_encipherment: bool = False,
               key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=content_commitment,
                         key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
                         key_cert_sign=key_cert_sign, crl_sign=crl_sign, encipher_only=False, decipher_only=False)


def make_ca(common_name: str, *, issuer: Issued | None = None, key_type: KeyType = KeyType.rsa,
            not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> Issued:
    """A CA certificate: self-signed when `issuer` is None, else issued by it."""
    now = utcnow()
    key = new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Clinic PKI"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.certificate.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - dt.timedelta(days=3650))
               .not_valid_after(not_after or now + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
               .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True))
    builder = _key_identifiers(builder, key, issuer)
    signing_key = issuer.key if issuer else key
    certificate = builder.sign(signing_key, _digest_for(signing_key))
    return Issued(certificate, key)


def make_end_entity(issuer: Issued, *, email: str | None = "patient@example.org", snils: str | None = None,
                    common_name: str = "Test Patient", not_before: dt.datetime | None = None,
                    not_after: dt.datetime | None = None, key_usage: KeyUsageProfile = KeyUsageProfile.signing,
                    policies: Sequence[str] = (), key_type: KeyType = KeyType.rsa,
                    key: PrivateKey | None = None, email_in_subject: bool = True,
                    email_in_alt_name: bool = True) -> Issued:
    """A patient's signing certificate; the e-mail goes in subjectAltName and the subject's emailAddress."""
    now = utcnow()
    key = key or new_key(key_type)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if email and email_in_subject:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    if snils:
        attributes.append(x509.NameAttribute(x509.ObjectIdentifier(SNILS_OID), snils))
    usage = (_key_usage(digital_signature=True, content_commitment=True) if key_usage is KeyUsageProfile.signing
             else _key_usage(key_encipherment=True))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name(attributes))
               .issuer_name(issuer.certificate.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - dt.timedelta(days=1))
               .not_valid_after(not_after or now + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(usage, critical=True))
    if email and email_in_alt_name:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in policies]),
            critical=False)
    builder = _key_identifiers(builder, key, issuer)
    return Issued(builder.sign(issuer.key, _digest_for(issuer.key)), key)


def make_crl(issuer: Issued, *, revoked: Iterable[int] = (), revoked_at: dt.datetime | None = None,
             this_update: dt.datetime | None = None, next_update: dt.datetime | None = None) -> bytes:
    """A DER CRL signed by `issuer` listing the `revoked` serial numbers."""
    now = utcnow()
    this_update = this_update or now - dt.timedelta(hours=1)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.certificate.subject)
               .last_update(this_update)
               .next_update(next_update or this_update + dt.timedelta(days=7))
               .add_extension(x509.CRLNumber(1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at or this_update).build())
    return builder.sign(issuer.key, _digest_for(issuer.key)).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Pki:
    """A clinic's trust chain: root -> issuing CA -> patients."""

    root: Issued
    intermediate: Issued
    patient_key: PrivateKey | None = field(default=None, repr=False)  # reused: RSA keygen per test is slow

    def patient(self, **options: Any) -> Issued:
        """A patient certificate from the issuing CA; see `make_end_entity` for the options."""
        if "key" not in options and "key_type" not in options and self.patient_key is not None:
            options["key"] = self.patient_key
        return make_end_entity(self.intermediate, **options)

    def crl(self, **options: Any) -> bytes:
        """A CRL from the issuing CA; see `make_crl` for the options."""
        return make_crl(self.intermediate, **options)

    def trust(self, **options: Any) -> TrustConfig:
        """The clinic's trust configuration: the root as anchor, the issuing CA as a known intermediate."""
        options.setdefault("intermediates", (self.intermediate.der,))
        options.setdefault("subject_match", SubjectMatch.email)
        return TrustConfig(anchors=(self.root.der,), **options)

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write `root.pem` and `intermediate.pem` (the chain a patient's tool includes with -certfile)."""
        directory.mkdir(parents=True, exist_ok=True)
        root_path, intermediate_path = directory / "root.pem", directory / "intermediate.pem"
        root_path.write_bytes(self.root.pem)
        intermediate_path.write_bytes(self.intermediate.pem)
        return root_path, intermediate_path


def make_pki(name: str = "Test Clinic", *, key_type: KeyType = KeyType.rsa) -> Pki:
    """A fresh root and issuing CA, plus one patient key to reuse."""
    root = make_ca(f"{name} Root CA", key_type=key_type)
    intermediate = make_ca(f"{name} Issuing CA", issuer=root, key_type=key_type)
    return Pki(root, intermediate, patient_key=new_key(KeyType.rsa))


def openssl_cms_sign(document_path: Path, cert_pem_path: Path, key_pem_path: Path, chain_pem_path: Path | None,
                     out_path: Path, der: bool = True, *, detached: bool = True, signed_attributes: bool = True,
                     digest: str = "sha256", extra_args: Sequence[str] = ()) -> bytes:
    """Sign like a patient would: `openssl cms -sign -binary`, detached unless told otherwise; returns the output."""
    command = [OPENSSL, "cms", "-sign", "-binary", "-in", str(document_path), "-signer", str(cert_pem_path),
               "-inkey", str(key_pem_path), "-md", digest, "-outform", "DER" if der else "PEM", "-out", str(out_path)]
    if chain_pem_path is not None:
        command += ["-certfile", str(chain_pem_path)]
    if not detached:
        command.append("-nodetach")
    if not signed_attributes:
        command.append("-noattr")
    command += list(extra_args)
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:  # openssl's own words, or a failing test only says "exit status 3"
        raise RuntimeError(f"openssl cms -sign failed: {done.stderr.decode(errors='replace').strip()}")
    return out_path.read_bytes()


def sign_document(document: bytes, signer: Issued, directory: Path, *, chain: Issued | None = None, der: bool = True,
                  **options: Any) -> bytes:
    """Write the document and the signer's files to `directory` and sign with openssl; returns the signature."""
    directory.mkdir(parents=True, exist_ok=True)
    document_path = directory / "document.pdf"
    document_path.write_bytes(document)
    cert_path, key_path = signer.write(directory, "signer")
    chain_path = None
    if chain is not None:
        chain_path = directory / "chain.pem"
        chain_path.write_bytes(chain.pem)
    out_path = directory / ("signature.p7s" if der else "signature.pem")
    return openssl_cms_sign(document_path, cert_path, key_path, chain_path, out_path, der, **options)
