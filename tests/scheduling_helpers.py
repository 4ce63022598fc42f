"""Building a working clinic for scheduling tests: the real catalogue, a physician with hours, answers."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server import keys
from server.app import create_app
from server.auth.models import Role
from server.db.base import utcnow
from server.db.engine import transaction
from server.scheduling import availability, conditions, rules
from server.scheduling.catalogue import load_conditions, load_questionnaires
from server.scheduling.screening import QuestionnaireDefinition, evaluate
from tests.conftest import make_settings
from tests.consent_helpers import seed_templates, sign_consents
from tests.factories import Account, create_staff, register_patient


async def seed_catalogue(client: TestClient) -> dict[str, QuestionnaireDefinition]:
    """The clinic's catalogue, questionnaires and consent texts, as `make serve` seeds them."""
    questionnaires = load_questionnaires()
    async with transaction(client.app[keys.sessions]) as session:
        await conditions.seed_catalogue(session, conditions=load_conditions(), questionnaires=questionnaires,
                                        now=utcnow())
    await seed_templates(client)
    return questionnaires


async def physician_on_duty(client: TestClient, *, time_zone: str = "Europe/Moscow",
                            slot_minutes: int = 20) -> tuple[Account, str]:
    """A physician who works around the clock, so a test always finds slots soon."""
    account = await create_staff(client, Role.physician)
    me = await (await client.get("/api/v1/me", headers=account.auth)).json()
    physician_id = me["physician"]["id"]
    hours = [rules.WeeklyHours(day, rules.Hours(dt.time(0), dt.time(23, 59), slot_minutes)) for day in range(7)]
    async with transaction(client.app[keys.sessions]) as session:
        await availability.replace_weekly_hours(session, physician_id=uuid.UUID(physician_id), hours=hours,
                                                ctx=_system(), now=utcnow(), weeks=4)
    return account, physician_id


def _system() -> Any:
    from server.audit.services import AuditContext

    return AuditContext(actor_role="test")


def benign_answers(definition: QuestionnaireDefinition) -> dict[str, Any]:
    """Answers that trigger no rule: for each question the first harmless value, chosen greedily."""
    answers: dict[str, Any] = {}
    for question in definition.questions:
        if not question.required:
            continue  # e.g. a blood-pressure reading the patient may not have
        if question.type == "yes_no":
            candidates: list[Any] = [False, True]
        elif question.type == "choice":
            candidates = [c.id for c in question.choices]
        else:
            low, high = question.min or 0, question.max or 100
            typical = 36.6 if "temp" in question.id else None
            candidates = [v for v in (typical, low, (low + high) / 2, high) if v is not None]
        for value in candidates:
            if not evaluate(definition, {**answers, question.id: value}):
                answers[question.id] = value
                break
        else:
            answers[question.id] = candidates[0]
    assert not evaluate(definition, answers), definition.code
    return answers


async def free_slot(client: TestClient, account: Account, physician_id: str, index: int = 0) -> str:
    response = await client.get(f"/api/v1/slots?physician_id={physician_id}&limit={index + 1}", headers=account.auth)
    assert response.status == 200, await response.text()
    return str((await response.json())["items"][index]["starts_at"])


def booking(physician_id: str, starts_at: str, answers: dict[str, Any], *, condition: str = "arvi",
            kind: str = "primary", **extra: Any) -> dict[str, Any]:
    return {"physician_id": physician_id, "starts_at": starts_at, "condition_code": condition, "kind": kind,
            "answers": answers, "complaint": "Кашель и насморк третий день", **extra}


async def booked_clinic(aiohttp_client: Any, tmp_path: Path, database_url: str,
                        patient_name: str = "Пётр Ожидающий", consented: bool = True,
                        **settings: Any) -> dict[str, Any]:
    """A clinic whose waiting room opens an hour ahead, with a patient booked into the next slot (so
    check-in is open now) who has signed the consents: what the waiting-room and staff-page tests start from."""
    client: TestClient = await aiohttp_client(create_app(make_settings(
        tmp_path, database_url, **{"checkin_opens_minutes": 60, "join_opens_minutes": 60, **settings})))
    catalogue = await seed_catalogue(client)
    doctor, physician_id = await physician_on_duty(client)
    patient = await register_patient(client, full_name=patient_name)
    if consented:
        await sign_consents(client, patient)
    starts_at = await free_slot(client, patient, physician_id)
    made = await client.post("/api/v1/consultations", headers=patient.auth,
                             json=booking(physician_id, starts_at, benign_answers(catalogue["respiratory"])))
    assert made.status == 201, await made.text()
    body = await made.json()
    return {"client": client, "catalogue": catalogue, "doctor": doctor, "physician_id": physician_id,
            "patient": patient, "consultation": body["id"], "starts_at": dt.datetime.fromisoformat(body["starts_at"])}
