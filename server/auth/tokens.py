"""Access tokens per RFC 8725 / RFC 9068: EdDSA only, `kid` from a rotating key set, every claim required."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import jwt

from server.keyring import JwtKeySet

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105  # RFC 9068 media type, not a secret
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "sid", "role"]


class InvalidToken(Exception):
    """The token must not be accepted; the message says why, for logs (never for the client)."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    amr: frozenset[str]
    jti: str
    expires_at: int


def issue_access_token(keys: JwtKeySet, *, user_id: uuid.UUID, session_id: uuid.UUID, role: str,
                       amr: list[str], issuer: str, audience: str, ttl_seconds: int, now: float) -> tuple[str, int]:
    """Sign a short-lived access token; returns the token and its expiry (epoch seconds)."""
    issued = int(now)
    claims = {
        "iss": issuer, "aud": audience, "sub": str(user_id), "sid": str(session_id), "role": role,
        "amr": amr, "iat": issued, "nbf": issued, "exp": issued + ttl_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    token = jwt.encode(claims, keys.signing_key, algorithm=ALGORITHM,
                       headers={"kid": keys.signing_kid, "typ": TOKEN_TYPE})
    return token, issued + ttl_seconds


def decode_access_token(token: str, *, keys: JwtKeySet, issuer: str, audience: str, now: float) -> AccessClaims:
    """Verify everything RFC 8725 asks before believing a single claim."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"unreadable header: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise InvalidToken("algorithm not allowed")
    if header.get("typ") != TOKEN_TYPE:
        raise InvalidToken("not an access token")
    kid = header.get("kid")
    public_key = keys.verifier(kid, now=now) if isinstance(kid, str) else None
    if public_key is None:
        raise InvalidToken("unknown or retired key id")
    try:
        claims = jwt.decode(token, public_key, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
                            options={"require": REQUIRED_CLAIMS, "strict_aud": True}, leeway=5)
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]), session_id=uuid.UUID(claims["sid"]), role=str(claims["role"]),
            amr=frozenset(str(v) for v in claims.get("amr", [])), jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from None
