"""`python -m bench`: the foundation's hot paths, measured on this machine.

Prints operations per second and per-operation times for: access-token verification (every API
request), audit appends (every access to health data), a full authenticated API request, and a
sign-in (dominated by argon2id at production cost); consent's costs (bench/consent.py); the calls through the
media forwarder (bench/call.py, also with every call recorded), the join time in Chromium (bench/join.py), what
packet loss costs through the forwarder (bench/loss.py), and recording (bench/recording.py: capture against aiortc's
MediaRecorder, finalisation, playback decryption), and QA (bench/qa.py): sampling over a million consultations and
the reports over a year of a 100-physician clinic.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bench import call, consent, join, loss, qa, recording
from server import keys
from server.app import create_app
from server.audit import services as audit
from server.audit.services import AuditContext
from server.auth.tokens import decode_access_token, issue_access_token
from server.db.engine import transaction
from server.db.migrate import upgrade
from server.keyring import load_audit_key, load_key_material
from server.observability import configure_logging
from server.settings import Settings


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def rate(label: str, count: int, seconds: float) -> None:
    print(f"{label:<48} {count / seconds:>12,.0f} /s   {seconds / count * 1e6:>10,.1f} µs each")


def bench_tokens(settings: Settings) -> None:
    material = load_key_material(settings)
    now = time.time()
    token, _ = issue_access_token(material.jwt, user_id=uuid.uuid4(), session_id=uuid.uuid4(), role="patient",
                                  amr=["pwd"], issuer="telemed", audience="telemed-api", ttl_seconds=900, now=now)
    n = 5000
    started = time.perf_counter()
    for _ in range(n):
        decode_access_token(token, keys=material.jwt, issuer="telemed", audience="telemed-api", now=now)
    rate("access token verification (EdDSA)", n, time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(n):
        issue_access_token(material.jwt, user_id=uuid.uuid4(), session_id=uuid.uuid4(), role="patient", amr=["pwd"],
                           issuer="telemed", audience="telemed-api", ttl_seconds=900, now=now)
    rate("access token issue (EdDSA)", n, time.perf_counter() - started)


async def bench_app(settings: Settings) -> None:
    backend = "PostgreSQL" if settings.resolved_database_url.startswith("postgresql") else "SQLite"
    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        ctx = AuditContext(actor_role="bench")
        n = 2000
        started = time.perf_counter()
        async with transaction(app[keys.sessions]) as session:
            for index in range(n):
                await audit.record(session, ctx=ctx, action="bench.read", object_type="record", object_id=str(index))
        rate(f"audit append, one transaction ({backend})", n, time.perf_counter() - started)
        n = 300
        started = time.perf_counter()
        for index in range(n):
            async with transaction(app[keys.sessions]) as session:
                await audit.record(session, ctx=ctx, action="bench.read", object_type="record", object_id=str(index))
        rate(f"audit append, own transaction each ({backend})", n, time.perf_counter() - started)
        started = time.perf_counter()
        async with transaction(app[keys.sessions]) as session:
            report = await audit.verify(session, checkpoints_dir=settings.checkpoints_dir,
                                        public_key=load_audit_key(settings).public_key())
        assert report.ok
        rate("audit chain verification", report.entries, time.perf_counter() - started)

        password = "benchmark password"  # noqa: S105  # a throw-away account in a temporary database
        await client.post("/api/v1/auth/register", json={
            "email": "bench@example.org", "password": password, "full_name": "Bench", "birth_date": "1970-01-01",
            "phone": "+79160000000"})
        times = []
        longest_stall = 0.0
        signing_in = True

        async def watch_the_loop() -> None:
            """The longest time the event loop went without giving this coroutine a turn."""
            nonlocal longest_stall
            last = time.perf_counter()
            while signing_in:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                longest_stall = max(longest_stall, now - last - 0.001)
                last = now

        watcher = asyncio.create_task(watch_the_loop())
        for _ in range(10):
            started = time.perf_counter()
            response = await client.post("/api/v1/auth/login", json={"email": "bench@example.org",
                                                                     "password": password})
            times.append(time.perf_counter() - started)
            assert response.status == 200
        signing_in = False
        await watcher
        token = (await response.json())["access_token"]
        print(f"{'sign-in at production argon2id cost (median)':<48} {statistics.median(times) * 1000:>12.1f} ms")
        print(f"{'longest event-loop stall during sign-ins':<48} {longest_stall * 1000:>12.1f} ms")
        n = 500
        headers = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        for _ in range(n):
            me = await client.get("/api/v1/me", headers=headers)
            assert me.status == 200
            await me.read()
        rate(f"GET /api/v1/me, sequential ({backend})", n, time.perf_counter() - started)


async def bench_scheduling(settings: Settings) -> None:
    """Slot search derives four weeks of slots for every physician on each request: how does it scale?"""
    import datetime as dt

    from server.audit.services import AuditContext as Ctx
    from server.auth.models import Role
    from server.auth.passwords import Passwords
    from server.db.base import utcnow
    from server.people import services as people
    from server.scheduling import availability, conditions, rules
    from server.scheduling.catalogue import load_conditions, load_questionnaires

    app = create_app(settings)
    async with TestClient(TestServer(app)) as client:
        passwords = Passwords(time_cost=1, memory_kib=1024, parallelism=1)
        hours = [rules.WeeklyHours(day, rules.Hours(dt.time(9), dt.time(18), 20)) for day in range(5)]
        async with transaction(app[keys.sessions]) as session:
            await conditions.seed_catalogue(session, conditions=load_conditions(),
                                            questionnaires=load_questionnaires(), now=utcnow())
            for index in range(20):
                user = await people.create_staff(
                    session, passwords=passwords, role=Role.physician, email=f"doctor{index}@bench.example",
                    password="x" * 12, full_name=f"Doctor {index}", specialty="general_practice",
                    licence_number=str(index), time_zone="Europe/Moscow", ctx=Ctx(actor_role="bench"), now=utcnow())
                physician = (await people.profile(session, user_id=user.id)).physician
                assert physician is not None
                await availability.replace_weekly_hours(session, physician_id=physician.id, hours=hours,
                                                        ctx=Ctx(actor_role="bench"), now=utcnow(), weeks=4)
        await client.post("/api/v1/auth/register", json={
            "email": "slots@example.org", "password": "benchmark password", "full_name": "S",
            "birth_date": "1970-01-01", "phone": "+79160000000"})
        login = await client.post("/api/v1/auth/login", json={"email": "slots@example.org",
                                                               "password": "benchmark password"})
        headers = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
        n = 20
        started = time.perf_counter()
        for _ in range(n):
            response = await client.get("/api/v1/slots?limit=100", headers=headers)
            assert response.status == 200
            await response.read()
        elapsed = (time.perf_counter() - started) / n
        print(f"{'free-slot search, 20 physicians x 4 weeks':<48} {elapsed * 1000:>12.1f} ms each")


def main() -> None:
    configure_logging(fmt="console", level="WARNING")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as folder:
        # `make bench` runs this twice: on SQLite, and on a throw-away PostgreSQL (scripts/with-postgres.sh).
        url = os.environ.get("TELEMED_TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{folder}/bench.sqlite3"
        print(f"database: {'PostgreSQL 15' if url.startswith('postgresql') else 'SQLite (aiosqlite)'}")
        upgrade(url)
        # media_workers=0: these apps measure the API; the calls' own series (bench/call.py) starts its workers.
        settings = Settings(_env_file=None, data_dir=Path(folder) / "var", database_url=url,  # type: ignore[call-arg]
                            log_level="WARNING", start_worker=False, media_workers=0)
        if not url.startswith("postgresql"):
            bench_tokens(settings)
            consent.bench_documents(settings)
            call.bench_calls()
            join.bench_join()
            loss.bench_loss()
            recording.bench_recording()
            qa.bench()
        asyncio.run(bench_app(settings))
        asyncio.run(bench_scheduling(settings))
        asyncio.run(consent.bench_simple_signing(settings))


if __name__ == "__main__":
    main()
