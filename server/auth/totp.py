"""TOTP second factor (RFC 6238, pyotp). Secrets are stored encrypted; each code works once."""

from __future__ import annotations

import datetime as dt
import hmac
import os
from collections.abc import Sequence

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ISSUER = "Telemed"


def new_secret() -> str:
    return pyotp.random_base32()


def encrypt_secret(key: bytes, secret: str, *, user_id: bytes) -> bytes:
    """AES-256-GCM, bound to the account so a secret copied onto another row does not decrypt."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode(), user_id)


def decrypt_secret(key: bytes, blob: bytes, *, user_id: bytes) -> str:
    return AESGCM(key).decrypt(blob[:12], blob[12:], user_id).decode()


def decrypt_with_any(keys: Sequence[bytes], blob: bytes, *, user_id: bytes) -> tuple[str, int]:
    """The secret and the position of the key that opened it (0: the current one), trying each in turn; raises
    InvalidTag if none does."""
    for position, key in enumerate(keys):
        try:
            return decrypt_secret(key, blob, user_id=user_id), position
        except InvalidTag:
            continue
    raise InvalidTag()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def matching_step(secret: str, code: str, *, now: dt.datetime, last_step: int | None) -> int | None:
    """The time step `code` belongs to (allowing one step of clock drift), if not used before."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None
