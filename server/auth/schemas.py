"""Request and response models for signing in, tokens and the second factor."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from server.http.parsing import RequestModel


class LoginIn(RequestModel):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=256)
    otp: str | None = Field(default=None, pattern=r"^\d{6}$", description="TOTP code, when enrolled")


class RefreshIn(RequestModel):
    refresh_token: str = Field(min_length=16, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105  # the scheme's name, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")


class AccessTokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105  # the scheme's name, not a secret
    expires_in: int


class TotpSetupOut(BaseModel):
    secret: str = Field(description="Base32 secret for an authenticator app")
    otpauth_uri: str


class TotpConfirmIn(RequestModel):
    code: str = Field(pattern=r"^\d{6}$")


class Jwks(BaseModel):
    keys: list[dict[str, str]]
