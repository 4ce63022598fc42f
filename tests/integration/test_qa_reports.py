"""The QA reports over HTTP: the figures from the database, the CSV (formula-safe), who may see which report; and
a review's FHIR export, read only by those allowed."""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from sqlalchemy import select

from qa_audit import fhir as qa_fhir
from qa_audit import report_queries, reports
from qa_audit.models import ReviewStatus
from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.scheduling.models import ConsultationStatus
from tests.factories import create_staff, login
from tests.integration.test_staff_pages import page, sign_in
from tests.qa_factories import QaClinic, add_consultations, add_expert, add_physician, add_review, qa_clinic

PERIOD = "from=2025-01&to=2025-02"
EVIL = "=HYPERLINK(\"http://evil.example\")"


@pytest.fixture
async def clinic(client: TestClient) -> QaClinic:
    """Anna (Cardiology): January 12 completed + 1 documented, 2 sampled (floor 2, met); February 5, none sampled
    (floor 1, not met). Boris (no department): January 3, 1 sampled (met). Reviews of Anna's two January samples:
    one submitted (80, failed history), one disputed (40, a critical failure) and overruled by a closed second
    review (90, failed history). Boris's sample is assigned, due in January 2025: overdue."""
    found = await qa_clinic(client)
    await add_physician(found, "Anna Cardio", department="Cardiology")
    await add_physician(found, "Boris Nodept")
    await add_expert(found, "Quinn Expert")
    await add_expert(found, "Rita Second")
    anna = await add_consultations(found, "Anna Cardio", "2025-01", count=12, sampled=2)
    await add_consultations(found, "Anna Cardio", "2025-01", count=1, sampled=0, status=ConsultationStatus.documented)
    await add_consultations(found, "Anna Cardio", "2025-02", count=5, sampled=0)
    await add_consultations(found, "Anna Cardio", "2024-12", count=40, sampled=0)  # before the period
    boris = await add_consultations(found, "Boris Nodept", "2025-01", count=3, sampled=1)
    await add_review(found, anna[0], physician="Anna Cardio", expert="Quinn Expert", status=ReviewStatus.submitted,
                     score=80.0, critical_failures=0, failed_items=["history"])
    await add_review(found, anna[1], physician="Anna Cardio", expert="Quinn Expert", status=ReviewStatus.disputed,
                     score=40.0, critical_failures=1, failed_items=["consent", "history"])
    await add_review(found, anna[1], physician="Anna Cardio", expert="Rita Second", status=ReviewStatus.closed,
                     round_=2, score=90.0, critical_failures=0, failed_items=["history"])
    await add_review(found, boris[0], physician="Boris Nodept", expert="Quinn Expert", status=ReviewStatus.assigned)
    return found


def _row(html: str, physician_id: uuid.UUID) -> dict[str, str]:
    """The figures of one physician's row, by their data-testid."""
    match = re.search(rf'data-physician="{physician_id}">(.*?)</tr>', html, re.S)
    assert match, html
    return dict(re.findall(r'data-testid="([a-z-]+)">([^<]*)<', match.group(1)))


async def test_the_clinic_report_shows_each_physicians_figures(client: TestClient, clinic: QaClinic) -> None:
    admin = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    await sign_in(client, admin)
    html = await page(client, f"/qa/reports?{PERIOD}")
    anna = _row(html, clinic.physician_id("Anna Cardio"))
    # 18 consultations in the period (the documented one counts), 2 sampled, floor 2 + 1, February short.
    assert (anna["consultations"], anna["sampled"], anna["share"], anna["floor"]) == ("18", "2", "11.1%", "3")
    assert (anna["done"], anna["overdue"], anna["mean-score"], anna["critical"]) == ("3", "0", "85", "0")
    boris = _row(html, clinic.physician_id("Boris Nodept"))
    assert (boris["consultations"], boris["sampled"], boris["floor"], boris["overdue"]) == ("3", "1", "1", "1")
    assert boris["mean-score"] == "—"
    assert 'data-testid="floor-below"' in html.split(f'data-physician="{clinic.physician_id("Anna Cardio")}"')[1] \
        .split("</tr>")[0]
    assert re.search(r'data-testid="total-consultations">21<', html)
    assert re.search(r'data-testid="total-overdue">1<', html)
    assert 'data-testid="floor-alert"' in html
    # The items failed most name the checklist's wording; the overruled first review's failures do not count.
    assert re.findall(r'data-testid="failed-item"><td>([^<]*)</td><td class="num">(\d+)<', html) == [
        ("Complaints and history collected", "2")]
    # The charts are inline SVG with a title, and the trend table has a row per month.
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="qa-chart" id="qa-share-chart" role="img"' in html
    assert "<title id=\"qa-trend-share-title\">" in html
    assert re.findall(r'data-testid="trend-row" data-month="([0-9-]+)"', html) == ["2025-01", "2025-02"]
    assert f'href="/qa/reports/physicians/{clinic.physician_id("Anna Cardio")}?from=2025-01&amp;to=2025-02"' in html


async def test_the_report_filters_by_department_and_speaks_russian(client: TestClient, clinic: QaClinic) -> None:
    expert = clinic.experts["Quinn Expert"][0]
    await sign_in(client, expert)
    html = await page(client, f"/qa/reports?{PERIOD}&department=Cardiology")
    assert "Anna Cardio" in html
    assert "Boris Nodept" not in html
    html = await page(client, f"/qa/reports?{PERIOD}&department=_none")
    assert "Boris Nodept" in html
    assert "Anna Cardio" not in html
    await sign_in(client, expert, lang="ru")
    response = await client.get(f"/qa/reports?{PERIOD}", headers={"Cookie": "telemed_lang=ru"})
    html = await response.text()
    assert response.status == 200
    assert "Отчёт о контроле качества" in html
    assert "Жалобы и анамнез собраны" in html  # the item's wording in the reader's language


async def test_the_csv_has_a_header_the_rows_and_defuses_formulas(client: TestClient, clinic: QaClinic) -> None:
    await add_physician(clinic, EVIL, department="+Surgery")
    admin = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    await sign_in(client, admin)
    response = await client.get(f"/qa/reports.csv?{PERIOD}", headers={"Accept-Language": "en"})
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert 'filename="qa-report-2025-01-2025-02.csv"' in response.headers["Content-Disposition"]
    body = (await response.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["Physician", "Department", "Consultations", "Sampled", "Sampled, %", "Floor", "Floor met",
                       "Reviews done", "Overdue", "Mean score", "Critical failures"]
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["Anna Cardio"] == ["Anna Cardio", "Cardiology", "18", "2", "11.1", "3", "no", "3", "0", "85.0",
                                      "0"]
    assert by_name["Boris Nodept"] == ["Boris Nodept", "No department", "3", "1", "33.3", "1", "yes", "0", "1", "",
                                       "0"]
    assert by_name["'" + EVIL] == ["'" + EVIL, "'+Surgery", "0", "0", "", "0", "yes", "0", "0", "", "0"]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


@pytest.mark.parametrize(("query", "field"), [("from=2025-13", "from"), ("from=soon", "from"), ("to=2025-1", "to"),
                                              ("from=2025-03&to=2025-01", "to"), ("from=2019-01&to=2025-01", "from")])
async def test_a_bad_period_is_a_problem_naming_the_field(client: TestClient, clinic: QaClinic, query: str,
                                                          field: str) -> None:
    await sign_in(client, clinic.experts["Quinn Expert"][0])
    for path in ("/qa/reports", "/qa/reports.csv"):
        response = await client.get(f"{path}?{query}", headers={"Accept-Language": "en"})
        assert response.status == 422
        problem = await response.json()
        assert problem["code"] == "validation_failed"
        assert [error["field"] for error in problem["errors"]] == [field]


async def test_a_physician_sees_only_their_own_report(client: TestClient, clinic: QaClinic) -> None:
    anna_account, anna = clinic.physicians["Anna Cardio"]
    await sign_in(client, anna_account)
    html = await page(client, f"/qa/reports/physicians/{anna}?{PERIOD}")
    assert "My quality report" in html
    assert re.search(r'data-testid="total-consultations">18<', html)
    assert re.search(r'data-testid="total-mean-score">85<', html)
    assert "Boris Nodept" not in html
    await page(client, f"/qa/reports/physicians/{clinic.physician_id('Boris Nodept')}", status=404)
    await page(client, "/qa/reports", status=404)
    await page(client, "/qa/reports.csv", status=404)


async def test_reports_are_refused_to_patients_and_strangers(client: TestClient, clinic: QaClinic) -> None:
    anna = clinic.physician_id("Anna Cardio")
    response = await client.get("/qa/reports", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith("/login")
    await sign_in(client, clinic.patient)
    for path in ("/qa/reports", "/qa/reports.csv", f"/qa/reports/physicians/{anna}"):
        await page(client, path, status=404)
    admin = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    await sign_in(client, admin)
    await page(client, f"/qa/reports/physicians/{uuid.uuid4()}", status=404)
    await page(client, "/qa/reports/physicians/not-an-id", status=404)
    html = await page(client, f"/qa/reports/physicians/{anna}?{PERIOD}")
    assert "Quality report: Anna Cardio" in html


async def test_the_report_query_is_aggregated_per_physician_month(client: TestClient, clinic: QaClinic) -> None:
    async with client.app[keys.read_sessions]() as session:
        samples = await report_queries.month_samples(session, period=reports.Period("2025-01", "2025-02"))
    assert sorted((s.month, s.consultations, s.sampled) for s in samples) == [
        ("2025-01", 3, 1), ("2025-01", 13, 2), ("2025-02", 5, 0)]


# --- FHIR export of a review --------------------------------------------------------------------------------------


async def _find(client: TestClient, resource_id: str, user_id: str, role: Role) -> Any:
    async with client.app[keys.read_sessions]() as session:
        return await qa_fhir.find(session, resource_id, user_id=uuid.UUID(user_id), role=role)


async def test_a_review_is_exported_only_to_those_allowed(client: TestClient, clinic: QaClinic) -> None:
    anna = await add_consultations(clinic, "Anna Cardio", "2025-03", count=1, sampled=1)
    review_id = await add_review(clinic, anna[0], physician="Anna Cardio", expert="Quinn Expert",
                                 status=ReviewStatus.submitted, score=100.0, critical_failures=0,
                                 answers={"identification": {"answer": "yes", "comment": "ok", "at": 5}})
    resource_id = qa_fhir.resource_id(review_id)
    admin = await create_staff(client, Role.admin, signed_in=False)
    quinn, rita = clinic.experts["Quinn Expert"][0], clinic.experts["Rita Second"][0]
    allowed = [(admin.user_id, Role.admin), (quinn.user_id, Role.qa_expert),
               (clinic.physicians["Anna Cardio"][0].user_id, Role.physician)]
    refused = [(rita.user_id, Role.qa_expert), (clinic.physicians["Boris Nodept"][0].user_id, Role.physician),
               (clinic.patient.user_id, Role.patient)]
    for user_id, role in allowed:
        export = await _find(client, resource_id, user_id, role)
        assert export is not None, role
        resource = qa_fhir.questionnaire_response(export, base_url="https://clinic.example", locale="en")
        assert QuestionnaireResponse.model_validate_json(resource.model_dump_json()).id == resource_id
        assert resource.subject.reference == f"Encounter/{anna[0]}"
        assert export.patient_id == uuid.UUID(clinic.patient.patient_id or "")
    for user_id, role in refused:
        assert await _find(client, resource_id, user_id, role) is None, role
    assert await _find(client, f"qa-{uuid.uuid4()}", admin.user_id, Role.admin) is None


async def test_an_open_review_is_not_exported_even_to_its_expert(client: TestClient, clinic: QaClinic) -> None:
    anna = await add_consultations(clinic, "Anna Cardio", "2025-03", count=1, sampled=1)
    review_id = await add_review(clinic, anna[0], physician="Anna Cardio", expert="Quinn Expert",
                                 status=ReviewStatus.in_review)
    quinn = clinic.experts["Quinn Expert"][0]
    assert await _find(client, qa_fhir.resource_id(review_id), quinn.user_id, Role.qa_expert) is None
    anna_account = clinic.physicians["Anna Cardio"][0]
    assert await _find(client, qa_fhir.resource_id(review_id), anna_account.user_id, Role.physician) is None


async def test_a_reviews_fhir_export_is_read_only_by_those_allowed_and_audited(client: TestClient) -> None:
    clinic = await qa_clinic(client)
    await add_physician(clinic, "Anna")
    await add_physician(clinic, "Boris")
    await add_expert(clinic, "Quinn")
    await add_expert(clinic, "Rita")
    [consultation] = await add_consultations(clinic, "Anna", "2025-03", count=1, sampled=1)
    review = await add_review(clinic, consultation, physician="Anna", expert="Quinn", status=ReviewStatus.submitted,
                              score=50.0, critical_failures=0,
                              answers={"consent": {"answer": "no", "comment": "x", "at": 3}})
    path = f"/fhir/R4/QuestionnaireResponse/{qa_fhir.resource_id(review)}"
    boss = await create_staff(client, Role.admin, with_totp=True)
    read = await client.get(path, headers=boss.auth)
    assert read.status == 200, await read.text()
    assert (await read.json())["subject"]["reference"] == f"Encounter/{consultation}"
    for name, status in (("Quinn", 200), ("Rita", 404)):
        expert = await login(client, clinic.experts[name][0])
        assert (await client.get(path, headers=expert.auth)).status == status, name
    for name, status in (("Anna", 200), ("Boris", 404)):
        physician = await login(client, clinic.physicians[name][0])
        answer = await client.get(path, headers=physician.auth)
        assert answer.status == status, name
        if status == 200:  # the reviewed physician is not told who reviewed them
            assert "Quinn" not in await answer.text()
    assert (await client.get(path, headers=clinic.patient.auth)).status == 404  # the clinic's, not the patient's
    missing = await client.get(f"/fhir/R4/QuestionnaireResponse/qa-{uuid.uuid4()}", headers=boss.auth)
    assert missing.status == 404
    async with client.app[keys.read_sessions]() as session:
        entries = (await session.scalars(select(AuditEntry).where(
            AuditEntry.object_type == "QuestionnaireResponse"))).all()
    assert len(entries) == 3  # admin, Quinn, Anna
    screenings = await client.get(f"/fhir/R4/QuestionnaireResponse?patient={clinic.patient.patient_id}",
                                  headers=clinic.patient.auth)
    assert screenings.status == 200  # the patient's screenings are theirs as before
