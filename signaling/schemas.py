"""Request and response models of the call's REST side (the WebSocket protocol is in docs/signaling.md)."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field


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
