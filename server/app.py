"""The composition root: builds the aiohttp application from settings."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consent import api as consent_api
from consent.services import WithdrawalEvents
from consent.setup import consent_setup
from media.recording import api as recordings_api
from qa_audit import api as qa_api
from qa_audit import feedback_api as qa_feedback_api
from server import keys
from server.audit import api as audit_api
from server.auth import api as auth_api
from server.auth.issuer import TokenIssuer
from server.auth.passwords import Passwords
from server.auth.throttle import LoginThrottle
from server.db.engine import create_engine, create_read_sessionmaker, create_sessionmaker
from server.db.migrate import alembic_config
from server.http import middlewares
from server.http.openapi import build_spec
from server.http.problems import ProblemError
from server.http.routing import registered_endpoints
from server.keyring import load_key_material
from server.observability import create_metrics
from server.people import api as people_api
from server.records import api as records_api
from server.records import fhir_api
from server.scheduling import api as scheduling_api
from server.scheduling import schedule_api
from server.scheduling.live import WaitingRoomBus
from server.settings import Settings
from signaling import api as signaling_api
from signaling import handler as signaling_handler

log = structlog.get_logger("telemed.app")
VERSION = "0.1.0"
ROUTERS = (auth_api.router, people_api.router, audit_api.router, scheduling_api.router, schedule_api.router,
           consent_api.router, signaling_api.router, records_api.router, recordings_api.router, qa_api.router,
           qa_feedback_api.router)
_head_revision = web.AppKey("head_revision", str)
_openapi: web.AppKey[dict[str, Any]] = web.AppKey("openapi")


async def database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[keys.settings].resolved_database_url)
    app[keys.engine] = engine
    app[keys.sessions] = create_sessionmaker(engine)
    app[keys.read_sessions] = create_read_sessionmaker(engine)
    yield
    await engine.dispose()


async def password_hashing(app: web.Application) -> AsyncIterator[None]:
    yield
    app[keys.passwords].close()


async def healthz(_request: web.Request) -> web.Response:
    """The process is up (liveness)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers and its schema is the one this code expects (readiness)."""
    try:
        async with request.app[keys.engine].connect() as connection:
            revision = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision())
    except Exception as exc:
        log.warning("readiness_failed", error=type(exc).__name__)
        raise ProblemError("The database is not reachable", status=503, code="not_ready",
                           title="Not ready") from None
    if revision != request.app[_head_revision]:
        raise ProblemError("The database schema is not up to date; run `telemed db upgrade`", status=503,
                           code="schema_outdated", title="Not ready")
    return web.json_response({"status": "ready", "database": "ok", "schema": revision})


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.metrics].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[_openapi])


def _ops_paths() -> dict[str, object]:
    plain = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "/healthz": {"get": {"operationId": "ops_healthz", "summary": "Liveness", "tags": ["ops"],
                             "security": [], "responses": plain}},
        "/readyz": {"get": {"operationId": "ops_readyz", "summary": "Readiness (database and schema)",
                            "tags": ["ops"], "security": [],
                            "responses": {**plain, "503": {"description": "Not ready"}}}},
        "/metrics": {"get": {"operationId": "ops_metrics", "summary": "Prometheus metrics", "tags": ["ops"],
                             "security": [], "responses": {"200": {"description": "Prometheus text format",
                                                                   "content": {"text/plain": {}}}}}},
    }


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the application; resources with a lifetime open in `cleanup_ctx` and close in reverse."""
    settings = settings or Settings()
    material = load_key_material(settings)
    app = web.Application(
        middlewares=[middlewares.request_id, middlewares.metrics, middlewares.security_headers,
                     middlewares.problem_json],
        client_max_size=settings.max_request_bytes,
    )
    app[keys.settings] = settings
    app[keys.key_material] = material
    app[keys.passwords] = Passwords.from_settings(settings)
    app[keys.token_issuer] = TokenIssuer(material.jwt, settings.jwt_issuer, settings.jwt_audience,
                                         settings.access_token_ttl_seconds,
                                         dt.timedelta(days=settings.refresh_token_ttl_days),
                                         dt.timedelta(seconds=settings.refresh_race_seconds))
    app[keys.throttle] = LoginThrottle(settings.rate_limit_storage_url,
                                       per_account=settings.login_attempts_per_account,
                                       per_ip=settings.login_attempts_per_ip,
                                       window_seconds=settings.login_window_seconds,
                                       registrations_per_ip=settings.registrations_per_ip_per_hour)
    app[keys.metrics] = create_metrics()
    app[keys.waiting_room] = WaitingRoomBus()
    app[keys.consent] = consent_setup(settings, material)
    app[keys.consent_withdrawals] = WithdrawalEvents()
    head = ScriptDirectory.from_config(alembic_config(settings.resolved_database_url)).get_current_head()
    app[_head_revision] = head or ""
    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(password_hashing)
    app.cleanup_ctx.append(signaling_handler.calls_context)  # after the database: calls close before it does
    app.on_shutdown.append(signaling_handler.close_calls)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/api/openapi.json", openapi)
    for router in ROUTERS:
        router.add_to(app)
    fhir_api.setup(app)  # /fhir/R4: FHIR's own errors (OperationOutcome), so not an ApiRouter

    from web import pages  # the web shell sits above every domain; only the composition root wires it

    pages.setup(app)
    app[_openapi] = build_spec(registered_endpoints(app), title="Telemed API", version=VERSION,
                               extra_paths={**_ops_paths(), **fhir_api.openapi_paths()})
    return app
