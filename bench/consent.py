"""Consent's costs per signing: rendering the PDF, verifying an enhanced signature, the seal, and a whole
simple signature (document, code, signing) through the services on the database."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from consent import rules, seal, signing, templates
from consent.models import ConsentPurpose, OtpChannel
from consent.pdf import ConsentDocumentInput, render_consent_pdf
from consent.signatures import CmsSignatureVerifier, Signer
from consent.texts import default_texts
from server import keys
from server.app import create_app
from server.audit.services import AuditContext
from server.auth.models import Role
from server.db.engine import transaction
from server.keyring import load_seal_keys
from server.people import services as people
from server.settings import Settings

BENCH_PASSWORD = "a bench password"  # noqa: S105  # accounts in a throw-away database


def _rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<48} {count / seconds:>12,.0f} /s   {seconds / count * 1e6:>10,.1f} µs each")


def _each(label: str, count: int, seconds: float) -> None:
    print(f"{label:<48} {seconds / count * 1000:>12.1f} ms each")


def bench_documents(settings: Settings) -> None:
    """CPU only: the same on any database."""
    text = default_texts("telemedicine_care")["ru"]
    data = ConsentDocumentInput(document_id=uuid.uuid4(), clinic_name="Bench clinic", purpose="telemedicine_care",
                                template_version=1, template_sha256="0" * 64, language="ru", title=text.title,
                                body=text.body, patient_name="Иванова Мария Петровна", birth_date=dt.date(1950, 1, 1),
                                document_date=dt.date(2026, 11, 22))
    pdf = render_consent_pdf(data)  # the first render loads the font
    n = 20
    started = time.perf_counter()
    for _ in range(n):
        render_consent_pdf(data)
    _each(f"consent PDF render ({len(pdf) // 1024} KiB, ru, embedded font)", n, time.perf_counter() - started)

    keyset = load_seal_keys(settings)
    payload = rules.sealed_payload({name: "x" * 64 for name in rules.SEALED_FIELDS})
    n = 2000
    started = time.perf_counter()
    for _ in range(n):
        sealed = seal.seal(keyset, payload)
        seal.check(keyset, payload=sealed.payload, signature=sealed.signature, key_id=sealed.key_id)
    _rate("consent seal: sign and verify (Ed25519)", n, time.perf_counter() - started)

    from tests.pki import make_pki, sign_document  # the test PKI: a root, an issuing CA, a patient

    pki = make_pki("Bench")
    patient = pki.patient(email="bench@example.org")
    verifier = CmsSignatureVerifier(pki.trust(crls=(pki.crl(),)))
    with tempfile.TemporaryDirectory() as folder:
        signature = sign_document(pdf, patient, Path(folder), chain=pki.intermediate)
    import asyncio

    async def verify_many(count: int) -> float:
        await verifier.verify(document=pdf, signature=signature, signer=Signer("bench@example.org"),
                              at=dt.datetime.now(dt.UTC))
        started = time.perf_counter()
        for _ in range(count):
            await verifier.verify(document=pdf, signature=signature, signer=Signer("bench@example.org"),
                                  at=dt.datetime.now(dt.UTC))
        return time.perf_counter() - started

    n = 20
    _each("enhanced signature verification (RSA, chain, CRL)", n, asyncio.run(verify_many(n)))


async def bench_simple_signing(settings: Settings) -> None:
    """Prepare a document, issue a code, sign with it: one patient's simple signature, on the database."""
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        setup = client.app[keys.consent]
        ctx = AuditContext(actor_role="bench")
        async with transaction(client.app[keys.sessions]) as session:
            await templates.seed_defaults(session, ctx=ctx, now=dt.datetime.now(dt.UTC))
        n = 10
        actors = []
        for index in range(n):
            async with transaction(client.app[keys.sessions]) as session:
                user, patient = await people.register_patient(
                    session, passwords=client.app[keys.passwords], email=f"bench{index}@example.org",
                    password=BENCH_PASSWORD, full_name="Bench Patient", birth_date=dt.date(1950, 1, 1),
                    phone="+79160000000", locale="ru", ctx=ctx, now=dt.datetime.now(dt.UTC))
                actors.append(signing.Actor(user.id, Role.patient, patient.id))
        started = time.perf_counter()
        for actor in actors:
            assert actor.patient_id is not None
            async with transaction(client.app[keys.sessions]) as session:
                document = await signing.prepare(session, patient_id=actor.patient_id,
                                                 purpose=ConsentPurpose.telemedicine_care, language="ru", actor=actor,
                                                 ctx=ctx, setup=setup, now=dt.datetime.now(dt.UTC))
                sending = await signing.request_code(session, document_id=document.id, channel=OtpChannel.email,
                                                     actor=actor, setup=setup, now=dt.datetime.now(dt.UTC))
            async with transaction(client.app[keys.sessions]) as session:
                await signing.sign_with_code(session, document_id=document.id, code=sending.code, actor=actor,
                                             client=signing.Client(None, "bench"), ctx=ctx, setup=setup,
                                             now=dt.datetime.now(dt.UTC))
        _each("simple signature: document + code + sign (DB)", n, time.perf_counter() - started)
