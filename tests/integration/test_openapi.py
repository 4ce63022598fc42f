"""The OpenAPI document is valid 3.1 and describes the fixed endpoints later tooling relies on."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

FIXED = {
    ("post", "/api/v1/auth/register"), ("post", "/api/v1/auth/login"), ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"), ("get", "/api/v1/me"), ("get", "/api/v1/me/access-log"),
    ("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"),
}


async def test_openapi_is_valid_and_complete(client: TestClient) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    spec = await response.json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    operations = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert operations >= FIXED
    login = spec["paths"]["/api/v1/auth/login"]["post"]
    token_schema = login["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert set(spec["components"]["schemas"][token_schema]["properties"]) == {
        "access_token", "refresh_token", "token_type", "expires_in"}
    assert "application/problem+json" in login["responses"]["422"]["content"]


async def test_openapi_lists_every_routed_api_endpoint(client: TestClient) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1/") and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert routed <= documented


async def test_openapi_roles_are_documented(client: TestClient) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    assert spec["paths"]["/api/v1/admin/users"]["post"]["x-roles"] == ["admin"]
    assert spec["paths"]["/api/v1/auth/login"]["post"]["security"] == []


async def test_health_ready_and_metrics(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["database"] == "ok"
    metrics = await client.get("/metrics")
    body = await metrics.text()
    assert metrics.status == 200
    assert 'telemed_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in body
