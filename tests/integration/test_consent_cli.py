"""`python -m server consent seed|verify` as an operator or an auditor runs them on the clinic's data."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import update

from consent.models import Consent
from server import keys
from server.app import create_app
from server.db.engine import transaction
from tests.consent_helpers import sign_consents
from tests.factories import register_patient
from tests.integration.test_cli import Install


async def test_seed_then_verify_a_consent_and_name_what_was_changed(aiohttp_client: Any, tmp_path: Path,
                                                                   database_url: str) -> None:
    install = Install(tmp_path, database_url)
    seeded = install.run("consent", "seed")
    assert "3 consent texts published" in seeded.stdout
    assert "0 consent texts published" in install.run("consent", "seed").stdout  # idempotent
    client = await aiohttp_client(create_app(install.settings()))  # the same data folder: the same seal key
    patient = await register_patient(client)
    consent = (await sign_consents(client, patient))[0]

    verified = install.run("consent", "verify", str(consent.id))
    assert "the consent verifies" in verified.stdout
    assert verified.stdout.count("ok  ") == 6

    async with transaction(client.app[keys.sessions]) as session:
        await session.execute(update(Consent).where(Consent.id == consent.id).values(template_version=7))
    tampered = install.run("consent", "verify", str(consent.id), ok=False)
    assert tampered.returncode == 1
    assert "FAIL fields: changed after sealing: template_version" in tampered.stdout
    assert "does not verify" in tampered.stderr

    missing = install.run("consent", "verify", str(uuid.uuid4()), ok=False)
    assert missing.returncode == 1
    assert "no consent" in missing.stderr
