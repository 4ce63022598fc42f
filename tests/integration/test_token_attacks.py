"""Every way a forged, stale or misused token might get in answers 401 (RFC 8725 checks)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server import keys
from tests.factories import Account, register_patient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(app: web.Application, account: Account, **changes: Any) -> dict[str, Any]:
    real = jwt.decode(account.access_token, options={"verify_signature": False})
    real.update(changes)
    return {k: v for k, v in real.items() if v is not None}


def _sign(app: web.Application, claims: dict[str, Any], **header: Any) -> str:
    material = app[keys.key_material].jwt
    headers = {"kid": material.signing_kid, "typ": "at+jwt", **header}
    return jwt.encode(claims, material.signing_key, algorithm="EdDSA", headers=headers)


async def _status(client: TestClient, token: str) -> int:
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    if response.status == 401:
        assert (await response.json())["code"] in {"invalid_token", "unauthorized"}
    return response.status


@pytest.fixture
async def patient(client: TestClient) -> Account:
    return await register_patient(client)


async def test_token_genuine_is_accepted(client: TestClient, app: web.Application, patient: Account) -> None:
    assert await _status(client, _sign(app, _claims(app, patient))) == 200


async def test_token_alg_none_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": app[keys.key_material].jwt.signing_kid}).encode())
    payload = _b64(json.dumps(_claims(app, patient)).encode())
    assert await _status(client, f"{header}.{payload}.") == 401


async def test_token_hs256_signed_with_public_key_is_refused(client: TestClient, app: web.Application,
                                                             patient: Account) -> None:
    public_pem = app[keys.key_material].jwt.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": app[keys.key_material].jwt.signing_kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(app, patient)).encode())}"
    import hashlib
    import hmac

    signature = _b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    assert await _status(client, f"{signing_input}.{signature}") == 401


async def test_token_expired_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    past = int(time.time()) - 3600
    assert await _status(client, _sign(app, _claims(app, patient, iat=past - 900, nbf=past - 900, exp=past))) == 401


async def test_token_not_yet_valid_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    future = int(time.time()) + 3600
    assert await _status(client, _sign(app, _claims(app, patient, nbf=future, exp=future + 900))) == 401


async def test_token_wrong_audience_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    assert await _status(client, _sign(app, _claims(app, patient, aud="another-service"))) == 401


async def test_token_wrong_issuer_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    assert await _status(client, _sign(app, _claims(app, patient, iss="https://evil.example"))) == 401


async def test_token_unknown_kid_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(_claims(app, patient), stranger, algorithm="EdDSA",
                       headers={"kid": "someone-else", "typ": "at+jwt"})
    assert await _status(client, token) == 401


async def test_token_known_kid_other_key_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(_claims(app, patient), stranger, algorithm="EdDSA",
                       headers={"kid": app[keys.key_material].jwt.signing_kid, "typ": "at+jwt"})
    assert await _status(client, token) == 401


async def test_token_tampered_payload_is_refused(client: TestClient, patient: Account) -> None:
    header, _, signature = patient.access_token.split(".")
    claims = jwt.decode(patient.access_token, options={"verify_signature": False})
    claims["role"] = "admin"
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert await _status(client, forged) == 401


async def test_token_refresh_token_used_as_access_is_refused(client: TestClient, patient: Account) -> None:
    assert await _status(client, patient.refresh_token) == 401


async def test_token_missing_required_claim_is_refused(client: TestClient, app: web.Application,
                                                       patient: Account) -> None:
    for claim in ("jti", "sub", "exp", "sid"):
        assert await _status(client, _sign(app, _claims(app, patient, **{claim: None}))) == 401, claim


async def test_token_wrong_typ_header_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    assert await _status(client, _sign(app, _claims(app, patient), typ="JWT")) == 401


async def test_token_for_unknown_session_is_refused(client: TestClient, app: web.Application, patient: Account) -> None:
    assert await _status(client, _sign(app, _claims(app, patient, sid=str(uuid.uuid4())))) == 401


async def test_token_garbage_and_wrong_scheme_are_refused(client: TestClient, patient: Account) -> None:
    assert await _status(client, "not.a.jwt") == 401
    response = await client.get("/api/v1/me", headers={"Authorization": f"Basic {patient.access_token}"})
    assert response.status == 401
