"""Request and response models of the call's REST side (the WebSocket protocol is in docs/signaling.md)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from server.http.parsing import RequestModel
from signaling.models import GuestRelation


class IceServerOut(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class JoinOut(BaseModel):
    ticket: str = Field(description="Single use, valid seconds: send it in the WebSocket's first message")
    expires_at: dt.datetime
    ws_url: str
    ice_servers: list[IceServerOut] = Field(description="For RTCPeerConnection; TURN credentials are short-lived")
    consultation_id: uuid.UUID
    role: str
    recording: bool = Field(description="Whether the call will be recorded (the patient's consent)")


class InvitationCreated(BaseModel):
    id: uuid.UUID
    url: str = Field(description="The one-time link for the guest: shown once, only its hash is kept")
    expires_at: dt.datetime


class InvitationOut(BaseModel):
    """An invitation as its physician sees it later: never the link, which is not kept."""

    id: uuid.UUID
    status: Literal["open", "redeemed", "revoked", "expired"]
    created_at: dt.datetime
    expires_at: dt.datetime
    redeemed_at: dt.datetime | None
    revoked_at: dt.datetime | None
    guest_name: str | None = Field(description="As the guest gave it, once the link is redeemed")
    guest_relation: GuestRelation | None


class InvitationList(BaseModel):
    items: list[InvitationOut]


class GuestIn(RequestModel):
    """What an invited guest says about themselves before joining (the guest page's form)."""

    name: str = Field(min_length=1, max_length=100)
    relation: GuestRelation
