"""Consent for tests that are about something else: the clinic's texts, and a patient who has signed them."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from consent import signing, templates
from consent.models import Consent, ConsentPurpose, OtpChannel
from consent.rules import GatePolicy
from consent.setup import ConsentSetup
from server import keys
from server.audit.services import AuditContext
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.keyring import load_seal_keys
from server.settings import Settings
from tests.factories import Account


async def seed_templates(client: TestClient) -> None:
    async with transaction(client.app[keys.sessions]) as session:
        await templates.seed_defaults(session, ctx=AuditContext(actor_role="test"), now=utcnow())


async def sign_consents(client: TestClient, patient: Account,
                        purposes: tuple[ConsentPurpose, ...] | None = None) -> list[Consent]:
    """Sign each purpose the clinic asks for with a real one-time code (taken before delivery)."""
    setup = client.app[keys.consent]
    assert patient.patient_id is not None
    actor = signing.Actor(uuid.UUID(patient.user_id), Role.patient, uuid.UUID(patient.patient_id))
    signed = []
    for purpose in purposes or setup.policy.asked_purposes():
        async with transaction(client.app[keys.sessions]) as session:
            document = await signing.prepare(session, patient_id=actor.patient_id, purpose=purpose,  # type: ignore[arg-type]
                                             language="ru", actor=actor, ctx=AuditContext(actor_role="patient"),
                                             setup=setup, now=utcnow())
            sending = await signing.request_code(session, document_id=document.id, channel=OtpChannel.email,
                                                 actor=actor, setup=setup, now=utcnow())
        async with transaction(client.app[keys.sessions]) as session:
            consent = await signing.sign_with_code(session, document_id=document.id, code=sending.code, actor=actor,
                                                   client=signing.Client(None, "tests"),
                                                   ctx=AuditContext(actor_role="patient"), setup=setup, now=utcnow())
        assert isinstance(consent, Consent), consent
        signed.append(consent)
    return signed


def offline_setup(data_dir: Path) -> ConsentSetup:
    """Consent services without an app (seeding a live server's database from the test)."""
    return ConsentSetup(policy=GatePolicy(), seal_keys=load_seal_keys(Settings(_env_file=None, data_dir=data_dir)),  # type: ignore[call-arg]
                        otp_key=b"test-otp-key".ljust(32, b"."), clinic_name="Test clinic")


async def sign_in_session(session: AsyncSession, *, patient_id: uuid.UUID, user_id: uuid.UUID,
                          setup: ConsentSetup) -> None:
    """Seed the consent texts and sign every asked purpose with a real code, inside one transaction."""
    ctx, now = AuditContext(actor_role="test"), utcnow()
    await templates.seed_defaults(session, ctx=ctx, now=now)
    actor = signing.Actor(user_id, Role.patient, patient_id)
    for purpose in setup.policy.asked_purposes():
        document = await signing.prepare(session, patient_id=patient_id, purpose=purpose, language="ru", actor=actor,
                                         ctx=ctx, setup=setup, now=now)
        sending = await signing.request_code(session, document_id=document.id, channel=OtpChannel.email, actor=actor,
                                             setup=setup, now=now)
        signed = await signing.sign_with_code(session, document_id=document.id, code=sending.code, actor=actor,
                                              client=signing.Client(None, "tests"), ctx=ctx, setup=setup, now=now)
        assert isinstance(signed, Consent), signed
