"""Minting the token pair a sign-in or refresh hands out."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from server.auth.tokens import issue_access_token
from server.keyring import JwtKeySet


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are 256 random bits, so a plain SHA-256 is a safe way to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


@dataclass(frozen=True)
class TokenIssuer:
    keys: JwtKeySet
    issuer: str
    audience: str
    access_ttl_seconds: int
    refresh_ttl: dt.timedelta
    # Two tabs (or a retried request) refreshing with one token within this window are a race, not theft.
    refresh_race_window: dt.timedelta = dt.timedelta(seconds=10)

    def access_token(self, *, user_id: uuid.UUID, session_id: uuid.UUID, role: str, amr: list[str],
                     now: dt.datetime) -> str:
        token, _ = issue_access_token(self.keys, user_id=user_id, session_id=session_id, role=role, amr=amr,
                                      issuer=self.issuer, audience=self.audience,
                                      ttl_seconds=self.access_ttl_seconds, now=now.timestamp())
        return token

    @staticmethod
    def new_refresh_token() -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        return token, hash_refresh_token(token)
