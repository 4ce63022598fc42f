"""FHIR DocumentReference: the signed protocol (every version) and the call's recording, with hash and size."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from media.recording.models import RecordingOutput
from server import keys
from server.auth.models import Role
from tests.factories import create_staff, register_patient
from tests.integration.test_fhir import entries, fhir_get
from tests.integration.test_protocol import NOTES, _save, _sign, _through_call
from tests.integration.test_recording_api import recorded_clinic


async def _documented(aiohttp_client: Any, tmp_path: Path, database_url: str) -> dict[str, Any]:
    """A recorded consultation whose call ended, with the protocol signed and then amended (two versions)."""
    clinic = await recorded_clinic(aiohttp_client, tmp_path, database_url)
    client, doctor, consultation = clinic["client"], clinic["doctor"], clinic["consultation"]
    await _through_call(client, consultation, clinic["patient"], doctor, clinic["catalogue"]["checkin"])
    assert (await _save(client, doctor, consultation, NOTES)).status in (200, 201)
    first, first_pdf = await _sign(client, doctor, consultation)
    amended = await client.post(f"/api/v1/consultations/{consultation}/protocol/amendments", headers=doctor.auth,
                                json={"reason": "Уточнены рекомендации"})
    assert amended.status == 201, await amended.text()
    assert (await _save(client, doctor, consultation, {**NOTES, "follow_up": "Через неделю"},
                        (await amended.json())["version"])).status == 200
    second, second_pdf = await _sign(client, doctor, consultation)
    clinic.update(first=first, second=second, first_pdf=first_pdf, second_pdf=second_pdf)
    return clinic


async def test_the_record_documents_validate_with_hash_size_and_links(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await _documented(aiohttp_client, tmp_path, database_url)
    client, doctor, patient = clinic["client"], clinic["doctor"], clinic["patient"]
    bundle = await fhir_get(client, f"/fhir/R4/DocumentReference?patient={patient.patient_id}", doctor)
    documents = {d["id"]: d for d in entries(bundle, "DocumentReference")}
    first, second = f"protocol-{clinic['first']['id']}", f"protocol-{clinic['second']['id']}"
    recording = f"recording-{clinic['recording']}"
    assert set(documents) == {first, second, recording}

    assert documents[first]["status"] == "superseded"  # the amendment replaced it; it stays in the record
    assert documents[second]["status"] == "current"
    for name, pdf in ((first, clinic["first_pdf"]), (second, clinic["second_pdf"])):
        attachment = documents[name]["content"][0]["attachment"]
        assert attachment["contentType"] == "application/pdf"
        assert attachment["size"] == len(pdf)
        assert attachment["hash"] == base64.b64encode(hashlib.sha1(pdf).digest()).decode()  # noqa: S324  # FHIR's
        assert attachment["extension"][0]["valueString"] == hashlib.sha256(pdf).hexdigest()
        assert documents[name]["context"]["encounter"] == [{"reference": f"Encounter/{clinic['consultation']}"}]

    async with client.app[keys.read_sessions]() as session:
        outputs = {o.participant: o for o in (await session.scalars(select(RecordingOutput).where(
            RecordingOutput.recording_id == uuid.UUID(clinic["recording"])))).all()}
    attachments = {a["attachment"]["title"]: a["attachment"] for a in documents[recording]["content"]}
    assert set(attachments) == {"physician.webm", "patient.webm"}
    played = await client.get("/api/v1/" + attachments["patient.webm"]["url"].split("/api/v1/", 1)[1],
                              headers=doctor.auth)
    webm = await played.read()
    assert attachments["patient.webm"]["size"] == len(webm) == outputs["patient"].plaintext_size
    assert attachments["patient.webm"]["hash"] == base64.b64encode(hashlib.sha1(webm).digest()).decode()  # noqa: S324
    assert documents[recording]["description"].startswith("Video recording of the teleconsultation (complete)")

    one = await fhir_get(client, f"/fhir/R4/DocumentReference/{recording}", patient)  # the patient's own
    assert one["id"] == recording
    everything = await fhir_get(client, f"/fhir/R4/Patient/{patient.patient_id}/$everything", doctor)
    assert {d["id"] for d in entries(everything, "DocumentReference")} == {first, second, recording}
    metadata = await fhir_get(client, "/fhir/R4/metadata")
    served = {r["type"] for r in metadata["rest"][0]["resource"]}
    assert "DocumentReference" in served


async def test_another_patient_or_physician_finds_no_documents(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await _documented(aiohttp_client, tmp_path, database_url)
    client, patient = clinic["client"], clinic["patient"]
    stranger = await register_patient(client, full_name="Чужой Пациент")
    other_doctor = await create_staff(client, Role.physician)
    for account in (stranger, other_doctor):
        for name in (f"recording-{clinic['recording']}", f"protocol-{clinic['first']['id']}"):
            outcome = await fhir_get(client, f"/fhir/R4/DocumentReference/{name}", account, status=404)
            assert outcome["resourceType"] == "OperationOutcome"
        bundle = await fhir_get(client, f"/fhir/R4/DocumentReference?patient={patient.patient_id}", account)
        assert entries(bundle, "DocumentReference") == []
    for bad in ("recording-x", "protocol-", "nothing-at-all"):
        await fhir_get(client, f"/fhir/R4/DocumentReference/{bad}", clinic["doctor"], status=404)
