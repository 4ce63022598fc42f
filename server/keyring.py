"""The node's key material: JWT signing keys, the master key, the audit checkpoint key and the consent seal.

Keys come from settings; where a setting is empty (development, tests) they are generated on first run
into `<data_dir>/keys/` with mode 0600 and reused afterwards. Production refuses generated keys, so a
deployment can never run on a key nobody chose to keep safe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.utils import base64url_encode
from pydantic import SecretStr

from server.settings import Settings

T = TypeVar("T")


class KeyConfigurationError(RuntimeError):
    """The keys cannot be used as configured (production without configured keys, unreadable key)."""


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of an OKP key: a `kid` that anyone holding the public key can recompute."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": base64url_encode(raw).decode()}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))  # RFC 7638: required members only
    return base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode()


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    public_key: Ed25519PublicKey
    not_after: float | None = None  # epoch seconds after which tokens under this key are refused


@dataclass(frozen=True)
class JwtKeySet:
    """One key signs; the key set verifies tokens from the current key and recently retired ones."""

    signing_kid: str
    signing_key: Ed25519PrivateKey
    verification_keys: dict[str, VerificationKey]

    def verifier(self, kid: str, *, now: float) -> Ed25519PublicKey | None:
        key = self.verification_keys.get(kid)
        if key is None or (key.not_after is not None and now > key.not_after):
            return None
        return key.public_key

    def jwks(self, *, now: float) -> dict[str, list[dict[str, str]]]:
        keys = []
        for key in self.verification_keys.values():
            if key.not_after is not None and now > key.not_after:
                continue
            raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            keys.append({"kty": "OKP", "crv": "Ed25519", "x": base64url_encode(raw).decode(),
                         "kid": key.kid, "use": "sig", "alg": "EdDSA"})
        return {"keys": keys}


@dataclass(frozen=True)
class KeyMaterial:
    jwt: JwtKeySet
    master_key: bytes
    master_key_id: str
    generated: frozenset[str] = field(default_factory=frozenset)
    # Retired master keys by id (TELEMED_MASTER_PREVIOUS_KEYS): they only unwrap, never wrap or derive.
    previous_master_keys: dict[str, bytes] = field(default_factory=dict, hash=False)

    def master_key_for(self, key_id: str) -> bytes | None:
        """The master key (current or retired) with this id, to unwrap what it wrapped; None if unknown."""
        if key_id == self.master_key_id:
            return self.master_key
        return self.previous_master_keys.get(key_id)

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A sub-key for one purpose (cookie signing, IP hashing, ...), so no key serves two jobs."""
        return _derive(self.master_key, purpose, length)

    def derive_retired(self, purpose: str, length: int = 32) -> list[bytes]:
        """The same sub-key under each retired master key (TELEMED_MASTER_PREVIOUS_KEYS): what was encrypted
        before a rotation (a second factor's secret) still opens, and is re-encrypted under the current key."""
        return [_derive(key, purpose, length) for key in self.previous_master_keys.values()]


def _derive(master_key: bytes, purpose: str, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=purpose.encode()).derive(master_key)



def _write_secret(path: Path, data: bytes) -> None:
    for folder in (path.parent.parent, path.parent) if path.parent.name == "jwt" else (path.parent,):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Write under a temporary name, then link into place: a second process generating the same key at
    # the same moment (web and worker on a fresh folder) keeps the first one's, and never reads half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_ed25519(pem: bytes, what: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyConfigurationError(f"{what} must be an Ed25519 private key in PEM")
    return key


def rotate_jwt_key(keys_dir: Path, *, now: float | None = None) -> str:
    """Add a new signing key; older keys keep verifying until the tokens they signed have expired."""
    key = Ed25519PrivateKey.generate()
    kid = jwk_thumbprint(key.public_key())
    stamp = int(now if now is not None else time.time())
    _write_secret(keys_dir / "jwt" / f"{stamp:012d}-{kid}.pem", _pem(key))
    return kid


def _file_jwt_keys(keys_dir: Path, *, grace_seconds: int, now: float) -> tuple[JwtKeySet, bool]:
    folder = keys_dir / "jwt"
    generated = False
    if not folder.is_dir() or not any(folder.glob("*.pem")):
        rotate_jwt_key(keys_dir, now=now)
        generated = True
    files = sorted(folder.glob("*.pem"))
    verification: dict[str, VerificationKey] = {}
    for index, path in enumerate(files):
        key = _load_ed25519(path.read_bytes(), f"JWT key {path.name}")
        kid = jwk_thumbprint(key.public_key())
        successor_created = int(files[index + 1].name.split("-", 1)[0]) if index + 1 < len(files) else None
        not_after = None if successor_created is None else successor_created + grace_seconds
        if not_after is not None and now > not_after:
            path.unlink()  # retired long enough that no token it signed can still be valid
            continue
        verification[kid] = VerificationKey(kid, key.public_key(), not_after)
    signing = _load_ed25519(files[-1].read_bytes(), "JWT key")
    return JwtKeySet(jwk_thumbprint(signing.public_key()), signing, verification), generated


def _configured_jwt_keys(pem: str, previous: list[str]) -> JwtKeySet:
    signing = _load_ed25519(pem.encode(), "TELEMED_JWT_PRIVATE_KEY")
    kid = jwk_thumbprint(signing.public_key())
    verification = {kid: VerificationKey(kid, signing.public_key())}
    for old in previous:
        public = serialization.load_pem_public_key(old.encode())
        if not isinstance(public, Ed25519PublicKey):
            raise KeyConfigurationError("TELEMED_JWT_PREVIOUS_PUBLIC_KEYS holds Ed25519 public keys in PEM")
        verification[jwk_thumbprint(public)] = VerificationKey(jwk_thumbprint(public), public)
    return JwtKeySet(kid, signing, verification)


def _base64_key(configured: SecretStr | None, path: Path) -> tuple[str, bool]:
    """The configured value, or the one generated once (32 random bytes, base64) into `path` (0600); and whether it
    was generated."""
    if configured is not None:
        return configured.get_secret_value(), False
    if not path.exists():
        _write_secret(path, base64.b64encode(secrets.token_bytes(32)) + b"\n")
    return path.read_text(), True


def _decoded(raw: str, *, what: str, sizes: range) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError as exc:
        raise KeyConfigurationError(f"the {what} must be base64") from exc
    if len(key) not in sizes:
        raise KeyConfigurationError(f"the {what} must be {sizes.start}{'' if len(sizes) == 1 else ' or more'} "
                                    "bytes in base64")
    return key


def _master_key(settings: Settings) -> tuple[bytes, bool]:
    raw, generated = _base64_key(settings.master_key, settings.keys_dir / "master.key")
    return _decoded(raw, what="master key", sizes=range(32, 33)), generated


def master_key_id(key: bytes) -> str:
    """A master key's public name, stored with what it wraps, so a rotation knows which key opens what."""
    return hashlib.sha256(b"telemed-master-key-id" + key).hexdigest()[:16]


def _previous_master_keys(settings: Settings, current_id: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for position, secret in enumerate(settings.master_previous_keys):
        try:
            key = base64.b64decode(secret.get_secret_value().strip(), validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise KeyConfigurationError(
                f"TELEMED_MASTER_PREVIOUS_KEYS[{position}] must be 32 bytes in base64")
        if master_key_id(key) != current_id:  # the current key listed too: harmless, nothing to add
            keys[master_key_id(key)] = key
    return keys


def _audit_key(settings: Settings) -> tuple[Ed25519PrivateKey, bool]:
    if settings.audit_key is not None:
        return _load_ed25519(settings.audit_key.get_secret_value().encode(), "TELEMED_AUDIT_KEY"), False
    path = settings.keys_dir / "audit.pem"
    if not path.exists():
        _write_secret(path, _pem(Ed25519PrivateKey.generate()))
    return _load_ed25519(path.read_bytes(), "audit key"), True


def load_key_material(settings: Settings, *, now: float | None = None) -> KeyMaterial:
    """Load (or, outside production, create) the keys a web node needs (not the audit key)."""
    now = time.time() if now is None else now
    settings.ensure_data_dir()
    if settings.is_production:
        missing = [name for name, value in (("TELEMED_JWT_PRIVATE_KEY", settings.jwt_private_key),
                                            ("TELEMED_MASTER_KEY", settings.master_key)) if value is None]
        if missing:
            raise KeyConfigurationError("production refuses generated keys; set " + ", ".join(missing))
    generated: set[str] = set()
    if settings.jwt_private_key is not None:
        jwt_keys = _configured_jwt_keys(settings.jwt_private_key.get_secret_value(),
                                        settings.jwt_previous_public_keys)
    else:
        grace = settings.access_token_ttl_seconds + 60
        jwt_keys, _ = _file_jwt_keys(settings.keys_dir, grace_seconds=grace, now=now)
        generated.add("TELEMED_JWT_PRIVATE_KEY")
    master, master_generated = _master_key(settings)
    if master_generated:
        generated.add("TELEMED_MASTER_KEY")
    master_id = master_key_id(master)
    return KeyMaterial(jwt_keys, master, master_id, frozenset(generated),
                       previous_master_keys=_previous_master_keys(settings, master_id))


def load_audit_key(settings: Settings) -> Ed25519PrivateKey:
    """The key that signs audit checkpoints. Only the worker and the CLI load it: web nodes, the most
    exposed processes, never hold it, so one taken over cannot forge a checkpoint."""
    settings.ensure_data_dir()
    if settings.is_production and settings.audit_key is None:
        raise KeyConfigurationError("production refuses generated keys; set TELEMED_AUDIT_KEY")
    return _audit_key(settings)[0]


@dataclass(frozen=True)
class QaSecret:
    """The HMAC key of the QA sampling draw, with an id stored beside each decision (rotation: the id changes)."""

    key: bytes = field(repr=False)
    key_id: str


@dataclass(frozen=True)
class QaSecrets:
    """The clinic's QA secrets: the current one and the retired ones an inspector still needs to replay the months
    they drew (and the sampler, for consultations before a rotation's date). Which secret drew which day is the
    database's record of rotations (qa_audit), not this keyring's: the keyring only knows secrets by id."""

    current: QaSecret
    retired: dict[str, bytes] = field(default_factory=dict, repr=False, hash=False)

    def get(self, key_id: str) -> QaSecret | None:
        """The secret with this id, current or retired; None if this keyring does not hold it."""
        if key_id == self.current.key_id:
            return self.current
        key = self.retired.get(key_id)
        return None if key is None else QaSecret(key, key_id)

    def by_id(self) -> dict[str, bytes]:
        """Every secret held, by id (what a replay looks a decision's secret up in)."""
        return {**self.retired, self.current.key_id: self.current.key}


def qa_secret_id(key: bytes) -> str:
    """A QA secret's public name, stored with each decision it drew: shows which secret to use, reveals nothing."""
    return hashlib.sha256(b"telemed-qa-secret-id" + key).hexdigest()[:16]


def _qa_key(raw: str, *, what: str) -> QaSecret:
    key = _decoded(raw, what=what, sizes=range(16, 1025))
    return QaSecret(key, qa_secret_id(key))


def load_qa_secret(settings: Settings) -> QaSecret:
    """From TELEMED_QA_SECRET, or (outside production) generated once into `<keys>/qa-secret` (0600). Give it to
    the clinic's inspectors: with it they can recompute every sampling decision."""
    settings.ensure_data_dir()
    if settings.qa_secret is None and settings.is_production:
        raise KeyConfigurationError("production refuses generated keys; set TELEMED_QA_SECRET")
    raw, _ = _base64_key(settings.qa_secret, settings.keys_dir / "qa-secret")
    return _qa_key(raw, what="QA secret")


def retired_qa_secrets_dir(settings: Settings) -> Path:
    """Where retired QA secrets are kept, one base64 file each (0600): `<keys>/qa-secrets/`."""
    return settings.keys_dir / "qa-secrets"


def load_qa_secrets(settings: Settings) -> QaSecrets:
    """The current QA secret and every retired one in `<keys>/qa-secrets/` (files starting with a dot are
    ignored: they are writes in progress). A file that does not hold a secret is refused, by name only."""
    current = load_qa_secret(settings)
    retired: dict[str, bytes] = {}
    folder = retired_qa_secrets_dir(settings)
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            secret = _qa_key(path.read_text(), what=f"retired QA secret in {path.name}")
            if secret.key_id != current.key_id:
                retired[secret.key_id] = secret.key
    return QaSecrets(current, retired)


def new_qa_secret() -> QaSecret:
    """A fresh QA secret (32 random bytes), for a rotation."""
    key = secrets.token_bytes(32)
    return QaSecret(key, qa_secret_id(key))


def keep_retired_qa_secret(settings: Settings, secret: QaSecret) -> Path:
    """Keep `secret` in `<keys>/qa-secrets/<id>` (0600), so months it drew can still be replayed; idempotent."""
    path = retired_qa_secrets_dir(settings) / secret.key_id
    _write_secret(path, base64.b64encode(secret.key) + b"\n")
    return path


def install_qa_secret(settings: Settings, secret: QaSecret, *, record: Callable[[], T]) -> T:
    """Make `secret` the current one in `<keys>/qa-secret` (file-based secrets only), once `record()` (the rotation
    recorded in the database) has succeeded. The new secret is written first under another name, so a full disk
    fails before the record; the file is then replaced at once, so a sampler sees the old secret or the new one."""
    if settings.qa_secret is not None:
        raise KeyConfigurationError("the QA secret comes from TELEMED_QA_SECRET; change it there")
    path = settings.keys_dir / "qa-secret"
    staged = path.with_name(f".{path.name}.{os.getpid()}.next")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64encode(secret.key) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        result = record()
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, path)
    return result


def generate_key_settings() -> dict[str, str]:
    """Fresh values for every key setting, for an operator preparing a production `.env`."""
    return {
        "TELEMED_JWT_PRIVATE_KEY": _pem(Ed25519PrivateKey.generate()).decode(),
        "TELEMED_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "TELEMED_AUDIT_KEY": _pem(Ed25519PrivateKey.generate()).decode(),
        "TELEMED_SEAL_KEY": _pem(Ed25519PrivateKey.generate()).decode(),
        "TELEMED_QA_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


@dataclass(frozen=True)
class SealKeys:
    """The clinic's seal: one key signs consent records; retired keys keep verifying what they sealed."""

    signing_kid: str
    signing_key: Ed25519PrivateKey
    verification_keys: dict[str, Ed25519PublicKey]


def load_seal_keys(settings: Settings) -> SealKeys:
    """The seal key from settings, or (outside production) generated once into `<keys>/seal.pem`."""
    settings.ensure_data_dir()
    if settings.seal_key is not None:
        signing = _load_ed25519(settings.seal_key.get_secret_value().encode(), "TELEMED_SEAL_KEY")
    elif settings.is_production:
        raise KeyConfigurationError("production refuses generated keys; set TELEMED_SEAL_KEY")
    else:
        path = settings.keys_dir / "seal.pem"
        if not path.exists():
            _write_secret(path, _pem(Ed25519PrivateKey.generate()))
        signing = _load_ed25519(path.read_bytes(), "seal key")
    kid = jwk_thumbprint(signing.public_key())
    verification = {kid: signing.public_key()}
    for old in settings.seal_previous_public_keys:
        public = serialization.load_pem_public_key(old.encode())
        if not isinstance(public, Ed25519PublicKey):
            raise KeyConfigurationError("TELEMED_SEAL_PREVIOUS_PUBLIC_KEYS holds Ed25519 public keys in PEM")
        verification[jwk_thumbprint(public)] = public
    return SealKeys(kid, signing, verification)
