"""The call's tables: join tickets (the one-time pass from `POST .../join` to the WebSocket) and chat."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class CallRole(StrEnum):
    physician = "physician"
    patient = "patient"
    guest = "guest"  # an interpreter or relative the physician invited


class JoinTicket(Base):
    """Only the ticket's SHA-256 is kept: a copy of the table cannot join a call. `used_at` makes it single-use
    (claimed by a conditional UPDATE, so two sockets presenting it at once cannot both win)."""

    __tablename__ = "join_tickets"

    id: Mapped[uuid_pk]
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[CallRole] = mapped_column(Enum(CallRole, native_enum=False, length=16, validate_strings=True))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CallChatMessage(Base):
    """A chat message of the call, kept with the consultation (the record shows them). Plain text: markup was
    removed when it was sent, so it is displayed as text, never as HTML."""

    __tablename__ = "call_chat_messages"

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"), index=True)
    sender_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    sender_role: Mapped[CallRole] = mapped_column(Enum(CallRole, native_enum=False, length=16, validate_strings=True))
    text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
