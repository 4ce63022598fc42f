"""QA sampling over a million synthetic consultations: the HMAC draw and targeted rules for each, then the
monthly floor's top-up per physician (qa_audit.sampling, pure: what the sampling task and `qa replay` run).

And the QA reports over a year of a 100-physician clinic (360,000 consultations, 10%+ reviewed), seeded by bulk
inserts into a temporary SQLite database and read back as the report pages read them (qa_audit.report_queries).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from fractions import Fraction
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from qa_audit import report_queries, reports
from qa_audit.models import ChecklistTemplate, Review, ReviewStatus, SamplingDecision
from qa_audit.rules import DEFAULT_CHECKLIST
from qa_audit.sampling import Facts, SamplingPolicy, by_physician_month, decide, replay
from server.auth.models import Role, User
from server.db.engine import create_engine, create_read_sessionmaker
from server.models import Base
from server.people.models import Physician, QaExpert
from server.scheduling.models import Consultation, ConsultationKind, ConsultationStatus

CONSULTATIONS = 1_000_000
PHYSICIANS = 100
MONTHS = [f"2026-{month:02d}" for month in range(1, 13)]


def bench_sampling() -> None:
    facts = [Facts(uuid.UUID(int=n + 1), uuid.UUID(int=(n % PHYSICIANS) + 1), MONTHS[(n // PHYSICIANS) % 12],
                   rating=5 if n % 97 else 1, call_seconds=900.0 if n % 53 else 60.0,
                   physician_consultation_number=100)
             for n in range(CONSULTATIONS)]
    policy = SamplingPolicy()
    secret = b"benchmark qa secret, 32 bytes..!"
    started = time.perf_counter()
    sampled = sum(decide(item, secret=secret, policy=policy).sampled for item in facts)
    decided = time.perf_counter() - started
    print(f"{'QA sampling: decisions (draw + targeted rules)':<48} {CONSULTATIONS / decided:>12,.0f} /s"
          f"   (1,000,000 in {decided:.1f} s; {sampled / CONSULTATIONS:.1%} sampled)")
    started = time.perf_counter()
    reasons = replay(facts, secret=secret, policy=policy)
    replayed = time.perf_counter() - started
    groups = len(by_physician_month(facts))
    total = sum(1 for found in reasons.values() if found)
    print(f"{'QA sampling: replay with the monthly floor':<48} {replayed:>12.1f} s"
          f"     ({groups:,} physician-months, {total / CONSULTATIONS:.1%} sampled after the top-up)")


REPORT_PHYSICIANS = 100
PER_MONTH = 300  # consultations per physician and month
EXPERTS = 10
DEPARTMENTS = 10
YEAR = [f"2026-{month:02d}" for month in range(1, 13)]
CHUNK = 20_000


def _seed_year(url: str) -> int:
    """A year of the clinic, by bulk inserts (foreign keys to patients and the catalogue are left dangling: the
    reports never read those tables); the number of reviews."""
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    now = dt.datetime(2027, 1, 5, tzinfo=dt.UTC)
    keys = [item["key"] for item in DEFAULT_CHECKLIST["items"]]
    template_id, dangling = uuid.uuid4(), uuid.uuid4()
    physicians = [uuid.UUID(int=n + 1) for n in range(REPORT_PHYSICIANS)]
    experts = [uuid.UUID(int=10_000 + n) for n in range(EXPERTS)]
    users = [{"id": uuid.UUID(int=1_000 + n), "email": f"physician{n}@bench.example", "password_hash": "-",
              "role": Role.physician, "full_name": f"Physician {n:03d}", "locale": "ru", "created_at": now}
             for n in range(REPORT_PHYSICIANS)]
    users += [{"id": uuid.UUID(int=20_000 + n), "email": f"expert{n}@bench.example", "password_hash": "-",
               "role": Role.qa_expert, "full_name": f"Expert {n}", "locale": "ru", "created_at": now}
              for n in range(EXPERTS)]
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA synchronous=OFF")
        connection.execute(sa.insert(User), users)
        connection.execute(sa.insert(Physician), [
            {"id": physician_id, "user_id": uuid.UUID(int=1_000 + n), "specialty": "therapy", "licence_number": "-",
             "time_zone": "Europe/Moscow", "department": f"Department {n % DEPARTMENTS}"}
            for n, physician_id in enumerate(physicians)])
        connection.execute(sa.insert(QaExpert), [{"id": expert_id, "user_id": uuid.UUID(int=20_000 + n)}
                                                 for n, expert_id in enumerate(experts)])
        connection.execute(sa.insert(ChecklistTemplate), [{
            "id": template_id, "code": DEFAULT_CHECKLIST["code"], "version": DEFAULT_CHECKLIST["version"],
            "title": DEFAULT_CHECKLIST["title"], "items": DEFAULT_CHECKLIST["items"], "created_at": now}])
    total = 0
    for month_index, month in enumerate(YEAR):  # a month at a time: the year's rows never sit in memory at once
        consultations: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        reviews: list[dict[str, Any]] = []
        first = dt.datetime(2026, month_index + 1, 1, 6, tzinfo=dt.UTC)
        for p, physician_id in enumerate(physicians):
            for n in range(PER_MONTH):
                consultation_id = uuid.uuid4()
                starts = first + dt.timedelta(minutes=20 * n)
                consultations.append({
                    "id": consultation_id, "patient_id": dangling, "physician_id": physician_id,
                    "condition_id": dangling, "kind": ConsultationKind.primary,
                    "status": ConsultationStatus.documented if n % 3 else ConsultationStatus.completed,
                    "starts_at": starts, "ends_at": starts + dt.timedelta(minutes=20),
                    "questionnaire_id": dangling, "booked_by_user_id": dangling, "created_at": starts})
                sampled = n % 10 == 0 or n % 97 == 1
                decisions.append({"consultation_id": consultation_id, "physician_id": physician_id, "month": month,
                                  "sampled": sampled, "reasons": ["random"] if sampled else [],
                                  "draw_value": f"{n:016x}", "policy_version": 1, "secret_id": "bench",
                                  "decided_at": starts})
                if not sampled:
                    continue
                failed = [keys[(n + p) % len(keys)]] if n % 4 == 0 else []
                done = month_index < 11 or n < 200
                reviews.append({
                    "consultation_id": consultation_id, "physician_id": physician_id,
                    "expert_id": experts[(n + p) % EXPERTS], "template_id": template_id, "round": 1,
                    "status": ReviewStatus.acknowledged if done else ReviewStatus.assigned, "assigned_at": starts,
                    "due_on": (starts + dt.timedelta(days=7)).date(), "answers": {}, "notes": [], "summary": "",
                    "revision": 0, "score": 100.0 - 10 * len(failed) - (n % 7) if done else None,
                    "critical_failures": int(n % 40 == 0) if done else None, "failed_items": failed})
        with engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA synchronous=OFF")
            for table, rows in ((Consultation, consultations), (SamplingDecision, decisions), (Review, reviews)):
                for start in range(0, len(rows), CHUNK):
                    connection.execute(sa.insert(table), rows[start:start + CHUNK])
        total += len(reviews)
    engine.dispose()
    return total


async def _timed(make: Callable[[], Coroutine[Any, Any, reports.Report]], runs: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = await make()
        best = min(best, time.perf_counter() - started)
    return best, result


async def _reports(url: str) -> None:
    engine = create_engine(url)
    sessions = create_read_sessionmaker(engine)
    period, rate, today = reports.Period(YEAR[0], YEAR[-1]), Fraction(1, 10), dt.date(2027, 1, 5)

    async def clinic() -> reports.Report:
        async with sessions() as session:
            return await report_queries.report(session, period=period, rate=rate, today=today)

    async def department() -> reports.Report:
        async with sessions() as session:
            return await report_queries.report(session, period=period, rate=rate, today=today,
                                               department="Department 3")

    async def one() -> reports.Report:
        async with sessions() as session:
            return await report_queries.report(session, period=period, rate=rate, today=today,
                                               physician_id=uuid.UUID(int=42))

    try:
        elapsed, report = await _timed(clinic)
        print(f"{'QA report: clinic, a year of 100 physicians':<48} {elapsed:>12.2f} s"
              f"     ({report.total.consultations:,} consultations, {report.total.done:,} reviews done)")
        elapsed, report = await _timed(department)
        print(f"{'QA report: one department (10 physicians)':<48} {elapsed:>12.2f} s"
              f"     ({report.total.consultations:,} consultations)")
        elapsed, report = await _timed(one)
        print(f"{'QA report: one physician':<48} {elapsed * 1000:>12.0f} ms"
              f"    ({report.total.consultations:,} consultations)")
    finally:
        await engine.dispose()


def bench_reports() -> None:
    """Seed the year (not timed as the figure), then build the reports as the pages do."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "qa-reports.sqlite3"
        started = time.perf_counter()
        count = _seed_year(f"sqlite:///{path}")
        print(f"{'QA report: seeding the year (bulk inserts)':<48} {time.perf_counter() - started:>12.1f} s"
              f"     ({REPORT_PHYSICIANS * PER_MONTH * len(YEAR):,} consultations, {count:,} reviews)")
        asyncio.run(_reports(f"sqlite+aiosqlite:///{path}"))


def bench() -> None:
    bench_sampling()
    bench_reports()


if __name__ == "__main__":
    bench()
