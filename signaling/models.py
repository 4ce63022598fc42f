"""The call's tables: join tickets (the one-time pass from `POST .../join` to the WebSocket), chat, and the
one-time links by which the physician invites a third participant (an interpreter or a relative)."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import CheckConstraint, Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow, uuid_pk


class CallRole(StrEnum):
    physician = "physician"
    patient = "patient"
    guest = "guest"  # an interpreter or relative the physician invited


class GuestRelation(StrEnum):
    """Who an invited guest says they are to the patient; kept with the invitation, so the record can tell."""

    interpreter = "interpreter"
    family = "family"
    caregiver = "caregiver"
    other = "other"


class CallInvitation(Base):
    """A one-time link to the call for someone without an account. Only the link's SHA-256 is kept (a copy of the
    table lets nobody in), and once redeemed it works only in the browser that redeemed it: that browser holds a
    random pass in a cookie whose SHA-256 is `pass_sha256`. `redeemed_at` is claimed by a conditional UPDATE, so
    of two browsers opening the link at once exactly one gets in."""

    __tablename__ = "call_invitations"

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]  # the consultation's end plus the overrun: the call cannot outlast it
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    guest_name: Mapped[str | None] = mapped_column(String(100), default=None)
    guest_relation: Mapped[GuestRelation | None] = mapped_column(
        Enum(GuestRelation, native_enum=False, length=16, validate_strings=True), default=None)
    pass_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class JoinTicket(Base):
    """Only the ticket's SHA-256 is kept: a copy of the table cannot join a call. `used_at` makes it single-use
    (claimed by a conditional UPDATE, so two sockets presenting it at once cannot both win). A ticket is for an
    account (`user_id`) or for an invited guest (`invitation_id`), never both."""

    __tablename__ = "join_tickets"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (invitation_id IS NULL)", name="one_participant"),
    )

    id: Mapped[uuid_pk]
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None)
    invitation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("call_invitations.id", ondelete="CASCADE"), default=None)
    role: Mapped[CallRole] = mapped_column(Enum(CallRole, native_enum=False, length=16, validate_strings=True))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class CallChatMessage(Base):
    """A chat message of the call, kept with the consultation (the record shows them). Plain text: markup was
    removed when it was sent, so it is displayed as text, never as HTML. The sender is an account or an invited
    guest (whose invitation names them), never both."""

    __tablename__ = "call_chat_messages"
    __table_args__ = (
        CheckConstraint("(sender_user_id IS NULL) <> (sender_invitation_id IS NULL)", name="one_sender"),
    )

    id: Mapped[uuid_pk]
    consultation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"), index=True)
    sender_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"),
                                                             default=None)
    sender_invitation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("call_invitations.id"), default=None)  # NO ACTION: checked after a consultation's cascade
    sender_role: Mapped[CallRole] = mapped_column(Enum(CallRole, native_enum=False, length=16, validate_strings=True))
    text: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
