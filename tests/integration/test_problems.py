"""Bad input gets a clear RFC 9457 problem naming the field, never a 500."""

from __future__ import annotations

import io

from aiohttp.test_utils import TestClient

from tests.factories import PASSWORD

VALID = {"email": "new@example.org", "password": PASSWORD, "full_name": "N", "birth_date": "1970-01-01",
         "phone": "+79160001122"}


async def _problem(response: object) -> dict[str, object]:
    assert response.headers["Content-Type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    return await response.json()  # type: ignore[attr-defined, no-any-return]


async def test_problem_malformed_json_is_400(client: TestClient) -> None:
    response = await client.post("/api/v1/auth/register", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await _problem(response))["code"] == "malformed_body"


async def test_problem_wrong_content_type_is_415(client: TestClient) -> None:
    response = await client.post("/api/v1/auth/register", data="email=x", headers={"Content-Type": "text/plain"})
    assert response.status == 415


async def test_problem_wrong_types_name_each_field(client: TestClient) -> None:
    response = await client.post("/api/v1/auth/register", json={**VALID, "birth_date": "yesterday",
                                                                "phone": 79160001122, "email": "not-an-email"})
    assert response.status == 422
    body = await _problem(response)
    assert body["code"] == "validation_failed"
    assert {e["field"] for e in body["errors"]} == {"birth_date", "phone", "email"}  # type: ignore[union-attr]


async def test_problem_missing_and_unknown_fields(client: TestClient) -> None:
    data = {k: v for k, v in VALID.items() if k != "phone"}
    response = await client.post("/api/v1/auth/register", json={**data, "is_admin": True})
    body = await _problem(response)
    errors = {e["field"]: e["message"] for e in body["errors"]}  # type: ignore[union-attr]
    assert response.status == 422
    assert "phone" in errors
    assert errors["is_admin"] == "unknown field"


async def test_problem_body_not_an_object(client: TestClient) -> None:
    response = await client.post("/api/v1/auth/login", json=["a", "b"])
    assert response.status == 422
    assert (await _problem(response))["errors"][0]["field"] == "body"  # type: ignore[index]


async def test_problem_birth_date_in_future_is_refused(client: TestClient) -> None:
    response = await client.post("/api/v1/auth/register", json={**VALID, "birth_date": "2999-01-01"})
    assert response.status == 422


async def test_problem_oversized_body_is_413(client: TestClient) -> None:
    big = io.BytesIO(b'{"email": "' + b"a" * 2_000_000 + b'"}')  # a stream: aiohttp warns on huge bytes
    response = await client.post("/api/v1/auth/login", data=big, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await _problem(response))["code"] == "body_too_large"


async def test_problem_unknown_route_is_404(client: TestClient) -> None:
    response = await client.get("/api/v1/no-such-thing")
    assert response.status == 404
    body = await _problem(response)
    assert body["type"] == "/problems/not_found"
    assert body["instance"] == "/api/v1/no-such-thing"
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_problem_wrong_method_is_405_with_allow(client: TestClient) -> None:
    response = await client.delete("/api/v1/auth/login")
    assert response.status == 405
    assert "POST" in response.headers["Allow"]
    assert (await _problem(response))["code"] == "method_not_allowed"


async def test_problem_security_headers_on_every_response(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_raised_redirects_count_as_redirects_and_carry_headers(client: TestClient) -> None:
    response = await client.get("/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["X-Frame-Options"] == "DENY"
    metrics = await (await client.get("/metrics")).text()
    assert 'telemed_http_requests_total{method="GET",route="/",status="302"} 1.0' in metrics


async def test_problem_absurd_json_is_400_not_500(client: TestClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    huge_int = b'{"email": ' + b"9" * 5000 + b', "password": "x"}'
    not_utf8 = b'{"email": "\xff\xfe", "password": "x"}'
    for body in (deep, huge_int, not_utf8):
        response = await client.post("/api/v1/auth/login", data=io.BytesIO(body),
                                     headers={"Content-Type": "application/json"})
        assert response.status == 400, body[:40]
        assert (await _problem(response))["code"] == "malformed_body"


async def test_problem_control_characters_are_refused_by_field(client: TestClient) -> None:
    response = await client.post("/api/v1/auth/register", json={**VALID, "full_name": "A\x00B"})
    assert response.status == 422
    errors = (await _problem(response))["errors"]
    assert errors[0]["field"] == "full_name"  # type: ignore[index]
    login = await client.post("/api/v1/auth/login", json={"email": "nul\x00@x.org", "password": "x"})
    assert login.status == 422


async def test_problem_query_numbers_out_of_range_are_422(client: TestClient) -> None:
    from tests.factories import register_patient

    patient = await register_patient(client)
    response = await client.get(f"/api/v1/me/access-log?before={2**64}", headers=patient.auth)
    assert response.status == 422
    assert (await _problem(response))["errors"][0]["field"] == "before"  # type: ignore[index]
    wrong_type = await client.get("/api/v1/me/access-log?limit=many", headers=patient.auth)
    assert wrong_type.status == 422
