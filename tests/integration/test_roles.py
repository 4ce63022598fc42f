"""Deny by default: each role is refused on the others' endpoints; another patient's data is a 404."""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestClient

from server.auth.models import Role
from tests.factories import Account, admin, create_staff, register_patient

ADMIN_ONLY = [("GET", "/api/v1/admin/users"), ("POST", "/api/v1/admin/users")]
PHYSICIAN_ONLY = [("GET", "/api/v1/physicians/me")]
PATIENT_ONLY = [("GET", "/api/v1/me/access-log")]


async def _call(client: TestClient, account: Account, method: str, path: str) -> int:
    json_body = {"role": "qa_expert", "email": "new@clinic.example", "password": "x" * 12, "full_name": "N"} \
        if method == "POST" else None
    response = await client.request(method, path, headers=account.auth, json=json_body)
    if response.status == 403:
        assert (await response.json())["code"] == "role_forbidden"
    return response.status


@pytest.mark.parametrize(("role", "allowed"), [
    (Role.patient, PATIENT_ONLY), (Role.physician, PHYSICIAN_ONLY), (Role.qa_expert, []), (Role.admin, ADMIN_ONLY),
])
async def test_roles_refused_on_other_roles_endpoints(client: TestClient, role: Role,
                                                      allowed: list[tuple[str, str]]) -> None:
    if role is Role.patient:
        account = await register_patient(client)
    elif role is Role.admin:
        account = await admin(client)
    else:
        account = await create_staff(client, role)
    for method, path in ADMIN_ONLY + PHYSICIAN_ONLY + PATIENT_ONLY:
        status = await _call(client, account, method, path)
        if (method, path) in allowed:
            assert status in (200, 201), (role, path, status)
        else:
            assert status == 403, (role, path, status)


async def test_roles_patient_reading_another_patient_gets_404(client: TestClient) -> None:
    alice = await register_patient(client)
    bob = await register_patient(client)
    mine = await client.get(f"/api/v1/patients/{alice.patient_id}", headers=alice.auth)
    assert mine.status == 200
    theirs = await client.get(f"/api/v1/patients/{bob.patient_id}", headers=alice.auth)
    missing = await client.get(f"/api/v1/patients/{uuid.uuid4()}", headers=alice.auth)
    garbage = await client.get("/api/v1/patients/not-a-uuid", headers=alice.auth)
    assert theirs.status == missing.status == garbage.status == 404
    # Indistinguishable: the same body shape for an existing and a non-existing patient.
    theirs_body, missing_body = await theirs.json(), await missing.json()
    assert theirs_body["code"] == missing_body["code"] == "not_found"
    assert theirs_body.keys() == missing_body.keys()


async def test_roles_qa_expert_and_physician_cannot_read_patient_profiles(client: TestClient) -> None:
    patient = await register_patient(client)
    for role in (Role.qa_expert, Role.physician):
        staff = await create_staff(client, role)
        response = await client.get(f"/api/v1/patients/{patient.patient_id}", headers=staff.auth)
        assert response.status == 403


async def test_roles_admin_without_second_factor_is_held_at_mfa(client: TestClient) -> None:
    account = await create_staff(client, Role.admin)
    refused = await client.get("/api/v1/admin/users", headers=account.auth)
    assert refused.status == 403
    assert (await refused.json())["code"] == "mfa_required"
    assert (await client.get("/api/v1/me", headers=account.auth)).status == 200  # may still set it up


async def test_roles_admin_creates_physician_who_can_sign_in(client: TestClient) -> None:
    boss = await admin(client)
    response = await client.post("/api/v1/admin/users", headers=boss.auth, json={
        "role": "physician", "email": "Dr.New@Clinic.example", "password": "a long password", "full_name": "Dr New",
        "specialty": "cardiology", "licence_number": "77-01-9", "time_zone": "Europe/Samara"})
    assert response.status == 201
    assert (await response.json())["email"] == "dr.new@clinic.example"
    login = await client.post("/api/v1/auth/login", json={"email": "dr.new@clinic.example",
                                                         "password": "a long password"})
    assert login.status == 200
    token = (await login.json())["access_token"]
    me = await client.get("/api/v1/physicians/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.json())["time_zone"] == "Europe/Samara"


async def test_roles_physician_needs_specialty_licence_and_zone(client: TestClient) -> None:
    boss = await admin(client)
    response = await client.post("/api/v1/admin/users", headers=boss.auth, json={
        "role": "physician", "email": "dr@clinic.example", "password": "a long password", "full_name": "Dr",
        "time_zone": "Mars/Olympus"})
    assert response.status == 422
    fields = {e["field"] for e in (await response.json())["errors"]}
    assert "time_zone" in fields
