"""The clinic's seal on a consent record: an Ed25519 signature over its canonical JSON, with the key's id.

Anyone with the clinic's public key (published at `/api/v1/consents/seal-keys`) can check a seal with
any Ed25519 library: rebuild the payload's bytes with `rules.canonical_json` and verify.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from jwt.utils import base64url_encode

from consent.rules import canonical_json
from server.keyring import SealKeys


@dataclass(frozen=True)
class Seal:
    payload: str  # the canonical JSON, as text
    signature: str  # base64
    key_id: str


def seal(keys: SealKeys, payload: Mapping[str, Any]) -> Seal:
    data = canonical_json(payload)
    signature = keys.signing_key.sign(data)
    return Seal(data.decode(), base64.b64encode(signature).decode(), keys.signing_kid)


class SealProblem(Exception):
    """The seal does not hold: unknown key, unreadable signature, or a payload it does not cover."""


def check(keys: SealKeys, *, payload: str, signature: str, key_id: str) -> None:
    """Raises `SealProblem` saying what is wrong; returns quietly when the seal covers the payload."""
    public = keys.verification_keys.get(key_id)
    if public is None:
        raise SealProblem(f"sealed with key {key_id}, which this clinic's configuration does not know")
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:
        raise SealProblem("the seal is not valid base64") from None
    try:
        public.verify(raw, payload.encode())
    except InvalidSignature:
        raise SealProblem("the seal does not match the sealed record: the record or the seal was altered") from None


def published_keys(keys: SealKeys) -> list[dict[str, str]]:
    """The verification keys as JWKs (RFC 8037), for auditors outside the clinic."""
    out = []
    for kid, public in keys.verification_keys.items():
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        out.append({"kty": "OKP", "crv": "Ed25519", "x": base64url_encode(raw).decode(), "kid": kid, "use": "sig",
                    "alg": "EdDSA", "pem": pem.decode(), "current": "true" if kid == keys.signing_kid else "false"})
    return out
