"""`python -m server` / `telemed`: run, migrate, seed, manage accounts, verify the audit log."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from server.settings import Settings


def _settings() -> Settings:
    settings = Settings()
    settings.ensure_data_dir()
    return settings


def _logging(settings: Settings) -> None:
    from server.observability import configure_logging

    configure_logging(fmt=settings.resolved_log_format, level=settings.log_level)


class _Cli(click.Group):
    """Configuration mistakes end with one clear line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from server.keyring import KeyConfigurationError

        try:
            return super().invoke(ctx)
        except KeyConfigurationError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Cli)
def main() -> None:
    """Telemedicine video consultations: the server's command line."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: TELEMED_HOST, 127.0.0.1)")
@click.option("--port", default=None, type=int, help="Port (default: TELEMED_PORT, 8080)")
@click.option("--no-worker", is_flag=True, help="Do not start a Celery worker alongside")
def serve(host: str | None, port: int | None, no_worker: bool) -> None:
    """Start the web server (API, pages, signaling) and, unless told not to, a Celery worker with beat."""
    from aiohttp import web

    from server.app import create_app

    settings = _settings()
    _logging(settings)
    app = create_app(settings)  # loads (or first creates) the keys before a worker could race for them
    worker: subprocess.Popen[bytes] | None = None
    if settings.start_worker and not no_worker:
        worker = subprocess.Popen([sys.executable, "-m", "server", "worker"], start_new_session=True)
    try:
        web.run_app(app, host=host or settings.host, port=port if port is not None else settings.port,
                    print=click.echo, access_log=None, shutdown_timeout=10)
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


@main.command()
@click.option("--beat/--no-beat", default=True, help="Also run the periodic scheduler (one per deployment)")
def worker(beat: bool) -> None:
    """Run a Celery worker (reminders, finalisation, audit checkpoints)."""
    from server.celery_app import celery_app

    argv = ["worker", "--pool=solo", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    if beat:
        argv.append("--beat")
    celery_app.worker_main(argv)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: the latest)."""
    from server.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url, revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.option("--revision", required=True, help="Target revision, or `base` for an empty schema")
def db_downgrade(revision: str) -> None:
    from server.db.migrate import downgrade

    downgrade(_settings().resolved_database_url, revision)
    click.echo(f"database at {revision}")


@db.command("check")
def db_check() -> None:
    """Fail if the models differ from what the migrations build."""
    from server.db.migrate import check

    difference = check(_settings().resolved_database_url)
    if difference:
        raise click.ClickException(f"models and migrations differ: {difference}")
    click.echo("models match migrations")


@main.group()
def demo() -> None:
    """The demo clinic."""


@demo.command("seed")
@click.option("--if-empty", is_flag=True, help="Do nothing (quietly) when accounts already exist")
def demo_seed(if_empty: bool) -> None:
    """Create the demo clinic's accounts and print their logins once."""
    from server.auth.passwords import Passwords
    from server.db.runner import run_in_session
    from server.demo import render_accounts, seed, write_accounts_file

    settings = _settings()

    async def work(session: AsyncSession, s: Settings) -> Any:
        return await seed(session, s, passwords=Passwords.from_settings(s))

    accounts = run_in_session(work, settings)
    if accounts is None:
        if if_empty:
            path = settings.data_dir / "demo-accounts.txt"
            click.echo(f"demo clinic already seeded; logins are in {path}" if path.exists() else
                       "accounts already exist; not seeding")
            return
        raise click.ClickException("accounts already exist; the demo clinic is seeded into an empty database")
    path = settings.data_dir / "demo-accounts.txt"
    text = render_accounts(accounts, f"http://{settings.host}:{settings.port}", path)
    write_accounts_file(path, text)
    click.echo(text)


@demo.command("otp")
@click.argument("email")
def demo_otp(email: str) -> None:
    """Print the current TOTP code of a demo account (development only: stands in for a phone app)."""
    import pyotp

    from server.auth import totp
    from server.auth.services import find_user_by_email
    from server.db.runner import run_in_session
    from server.keyring import load_key_material

    settings = _settings()
    if settings.is_production:
        raise click.ClickException("not available in production")

    async def work(session: AsyncSession, s: Settings) -> str | None:
        user = await find_user_by_email(session, email)
        if user is None or user.totp_secret_encrypted is None:
            return None
        secret = totp.decrypt_secret(load_key_material(s).derive("totp-secrets"), user.totp_secret_encrypted,
                                     user_id=user.id.bytes)
        return pyotp.TOTP(secret).now()

    code = run_in_session(work, settings)
    if code is None:
        raise click.ClickException("no such account with a second factor")
    click.echo(code)


@main.group()
def catalogue() -> None:
    """The conditions catalogue and screening questionnaires."""


@catalogue.command("seed")
def catalogue_seed() -> None:
    """Add the default conditions and questionnaires the database lacks; edited entries are kept."""
    from server.db.base import utcnow
    from server.db.runner import run_in_session
    from server.scheduling import conditions
    from server.scheduling.catalogue import load_conditions, load_questionnaires

    async def work(session: AsyncSession, s: Settings) -> int:
        return await conditions.seed_catalogue(session, conditions=load_conditions(),
                                               questionnaires=load_questionnaires(), now=utcnow())

    click.echo(f"{run_in_session(work, _settings())} conditions added")


@main.group()
def consent() -> None:
    """Consent documents: the default texts, and verifying a signed consent."""


@consent.command("seed")
def consent_seed() -> None:
    """Publish the default consent texts for every purpose that has none yet."""
    from consent import templates
    from server.audit.services import AuditContext
    from server.db.base import utcnow
    from server.db.runner import run_in_session

    async def work(session: AsyncSession, s: Settings) -> int:
        return len(await templates.seed_defaults(session, ctx=AuditContext(actor_role="system"), now=utcnow()))

    click.echo(f"{run_in_session(work, _settings())} consent texts published")


@consent.command("verify")
@click.argument("consent_id", type=click.UUID)
def consent_verify(consent_id: Any) -> None:
    """Re-check a signed consent from the stored evidence: seal, fields, document, template, signature."""
    from consent import services
    from consent.models import Consent
    from consent.setup import consent_setup
    from server.audit import services as audit
    from server.audit.services import AuditContext
    from server.db.base import utcnow
    from server.db.runner import run_in_session
    from server.keyring import load_key_material

    async def work(session: AsyncSession, s: Settings) -> services.Verification | None:
        consent = await session.get(Consent, consent_id)
        if consent is None:
            return None
        setup = consent_setup(s, load_key_material(s), senders=False)
        result = await services.verify(session, consent, setup=setup)
        await audit.record(session, ctx=AuditContext(actor_role="cli"), action="consent.verified",
                           object_type="consent", object_id=consent.id, subject_patient_id=consent.patient_id,
                           detail={"ok": result.ok}, now=utcnow())
        return result

    result = run_in_session(work, _settings())
    if result is None:
        raise click.ClickException(f"no consent {consent_id}")
    for check in result.checks:
        click.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    if not result.ok:
        raise click.ClickException("the consent does not verify")
    click.echo("the consent verifies")


@main.group()
def users() -> None:
    """Accounts."""


@users.command("create")
@click.option("--role", required=True, type=click.Choice(["physician", "qa_expert", "admin"]))
@click.option("--email", required=True)
@click.option("--full-name", required=True)
@click.option("--specialty")
@click.option("--licence-number")
@click.option("--time-zone")
@click.option("--department", help="physicians and QA experts: QA can keep reviews out of a department")
@click.option("--practises-as", help="a QA expert who also sees patients: their physician id")
@click.option("--locale", default="ru", type=click.Choice(["ru", "en"]))
def users_create(role: str, email: str, full_name: str, specialty: str | None, licence_number: str | None,
                 time_zone: str | None, department: str | None, practises_as: str | None, locale: str) -> None:
    """Create a staff account; the password is read from TELEMED_NEW_PASSWORD or asked for."""
    from pydantic import ValidationError

    from server.audit.services import AuditContext
    from server.auth.models import Role
    from server.auth.passwords import Passwords
    from server.db.base import utcnow
    from server.db.runner import run_in_session
    from server.http.parsing import field_errors
    from server.http.problems import ProblemError
    from server.people import services
    from server.people.schemas import StaffCreateIn

    password = os.environ.get("TELEMED_NEW_PASSWORD") or getpass.getpass("Password for the new account: ")
    try:
        body = StaffCreateIn.model_validate({
            "role": role, "email": email, "password": password, "full_name": full_name, "locale": locale,
            "specialty": specialty, "licence_number": licence_number, "time_zone": time_zone,
            "department": department, "practises_as": practises_as})
    except ValidationError as exc:
        raise click.ClickException("; ".join(f"{e.field}: {e.message}" for e in field_errors(exc))) from None

    async def work(session: AsyncSession, s: Settings) -> str:
        user = await services.create_staff(
            session, passwords=Passwords.from_settings(s),
            role=Role(body.role), email=body.email, password=body.password, full_name=body.full_name,
            locale=body.locale, specialty=body.specialty, licence_number=body.licence_number,
            time_zone=body.time_zone, department=body.department, practises_as=body.practises_as,
            ctx=AuditContext(actor_role="cli", request_id="cli"), now=utcnow())
        return str(user.id)

    try:
        user_id = run_in_session(work, _settings())
    except ProblemError as exc:
        raise click.ClickException(exc.detail or exc.title) from None
    click.echo(f"created {role} {user_id}")


@main.group()
def audit() -> None:
    """The audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the hash chain and the signed checkpoints; exit 1 naming the first broken entry."""
    from server.audit import services
    from server.db.runner import run_in_session
    from server.keyring import load_audit_key

    async def work(session: AsyncSession, s: Settings) -> services.VerifyReport:
        return await services.verify(session, checkpoints_dir=s.checkpoints_dir,
                                     public_key=load_audit_key(s).public_key())

    report = run_in_session(work, _settings(), read_only=True)
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the chain's current tip now (the worker also does this periodically)."""
    from server.audit.tasks import _checkpoint
    from server.db.runner import run_in_session

    path = run_in_session(_checkpoint, _settings())
    click.echo(f"checkpoint written: {path}" if path else "the audit log is empty; nothing to sign")


@main.group()
def keys() -> None:
    """Key material."""


@keys.command("rotate-jwt")
def keys_rotate_jwt() -> None:
    """Start signing with a new JWT key (file-based keys); the old one verifies until its tokens expire."""
    from server.keyring import rotate_jwt_key

    settings = _settings()
    if settings.jwt_private_key is not None:
        raise click.ClickException("the JWT key comes from TELEMED_JWT_PRIVATE_KEY; rotate it there "
                                   "(move the old public key to TELEMED_JWT_PREVIOUS_PUBLIC_KEYS)")
    click.echo(f"new signing key {rotate_jwt_key(settings.keys_dir)}; restart the server to use it")


@keys.command("generate")
def keys_generate() -> None:
    """Print fresh key settings for a production `.env` (keep the output secret)."""
    import json

    from server.keyring import generate_key_settings

    for name, value in generate_key_settings().items():
        click.echo(f"{name}={json.dumps(value)}")


@main.group()
def recordings() -> None:
    """Recordings: retention (crypto-erasure) and re-wrapping their keys after a master key rotation."""


@recordings.command("purge")
@click.option("--dry-run", is_flag=True, help="List the recordings that would be erased; change nothing")
def recordings_purge(dry_run: bool) -> None:
    """Crypto-erase recordings past TELEMED_RETENTION_RECORDING_DAYS that are not on legal hold (the worker also
    does this daily)."""
    from media.recording import retention, services
    from server.audit.services import AuditContext
    from server.db.base import utcnow
    from server.db.runner import run_in_session

    settings = _settings()
    days, now = settings.retention_recording_days, utcnow()
    if days == 0:
        click.echo("TELEMED_RETENTION_RECORDING_DAYS=0: recordings are kept forever; nothing to erase")
        return
    if dry_run:
        async def listing(session: AsyncSession, s: Settings) -> list[tuple[Any, str, Any]]:
            found = await retention.expired_recordings(session, days=days, now=now)
            return [(r.id, r.state.value, retention.retained_since(r)) for r, _patient in found]

        rows = run_in_session(listing, settings, read_only=True)
        for recording_id, state, since in rows:
            click.echo(f"would erase {recording_id} ({state}, since {since:%Y-%m-%d})")
        click.echo(f"{len(rows)} recordings would be erased (retention {days} days; dry run, nothing changed)")
        return

    async def work(session: AsyncSession, s: Settings) -> list[Any]:
        return await retention.purge_expired(session, storage=services.storage_for(s), settings=s, now=now,
                                             ctx=AuditContext(actor_role="cli", request_id="cli"))

    erased = run_in_session(work, settings)
    for recording_id in erased:
        click.echo(f"erased {recording_id}")
    click.echo(f"{len(erased)} recordings erased (retention {days} days)")


@recordings.command("rewrap")
def recordings_rewrap() -> None:
    """Re-wrap every recording's data key under TELEMED_MASTER_KEY, opening each with the key that wrapped it
    (TELEMED_MASTER_PREVIOUS_KEYS); safe to run again. Exit 1 if some recording cannot be opened."""
    from media.recording import rotation
    from server import models  # noqa: F401  # every table, so the recordings' foreign keys resolve on flush
    from server.audit.services import AuditContext
    from server.db.base import utcnow
    from server.db.runner import run_in_session
    from server.keyring import load_key_material

    async def work(session: AsyncSession, s: Settings) -> rotation.Rewrap:
        return await rotation.rewrap_all(session, keys=load_key_material(s), now=utcnow(),
                                         ctx=AuditContext(actor_role="cli", request_id="cli"))

    result = run_in_session(work, _settings())
    click.echo(f"{len(result.rewrapped)} recordings re-wrapped under master key {result.key_id}; "
               f"{result.already} were under it already")
    for key_id, ids in result.unknown_key.items():
        click.echo(f"{len(ids)} recordings wrapped under master key {key_id}, which is not configured "
                   "(add it to TELEMED_MASTER_PREVIOUS_KEYS): " + ", ".join(map(str, ids)), err=True)
    if result.not_unwrapping:
        click.echo("data keys that do not unwrap (altered?): " + ", ".join(map(str, result.not_unwrapping)),
                   err=True)
    if not result.complete:
        raise click.ClickException("some recordings are not under the current master key; keep the previous keys")
    click.echo("every recording is under the current master key: TELEMED_MASTER_PREVIOUS_KEYS may be emptied")


@main.group()
def qa() -> None:
    """The QA audit: an inspector's replay of a month's sampling, and rotating the sampling secret."""


def _month_option(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    import re

    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise click.BadParameter("a month as YYYY-MM, e.g. 2026-03")
    return value


@qa.command("replay")
@click.option("--month", required=True, callback=_month_option, help="The month, YYYY-MM (the clinic's time zone)")
def qa_replay(month: str) -> None:
    """Recompute the month's sampling from stored data (draws, targeted reasons, top-ups, the floor) and list every
    difference, by consultation and physician id; exit 1 if there is any."""
    from zoneinfo import ZoneInfo

    from qa_audit import replay, services
    from server import models  # noqa: F401  # every table, so the joined models' relationships resolve
    from server.audit.services import AuditContext
    from server.db.base import utcnow
    from server.db.runner import run_in_session
    from server.keyring import load_qa_secrets

    async def work(session: AsyncSession, s: Settings) -> replay.Report:
        return await services.replay_month(session, month=month, secrets=load_qa_secrets(s),
                                           policy=services.policy_from(s), zone=ZoneInfo(s.clinic_time_zone),
                                           ctx=AuditContext(actor_role="cli", request_id="cli"), now=utcnow())

    report = run_in_session(work, _settings())
    click.echo(f"QA sampling replay of {report.month}: {report.decisions} decisions"
               f"{'' if report.closed else ' (the month is still open: its floor and decisions may still change)'}")
    for physician in report.physicians:
        click.echo(f"physician {physician.physician_id}: {physician.consultations} consultations, "
                   f"{physician.sampled} sampled, floor {physician.floor}: {'met' if physician.met else 'NOT MET'}")
    for item in report.pending:
        click.echo(f"pending {item.line()}")
    for item in report.differences:
        click.echo(f"DIFFERENT {item.line()}")
    if not report.ok:
        click.echo(f"{len(report.differences)} differences", err=True)
        sys.exit(1)
    click.echo("every decision replays as stored")


@qa.command("rotate-secret")
@click.option("--from", "effective_from", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="The first day (by the consultation's start, the clinic's time zone) the new secret draws")
def qa_rotate_secret(effective_from: Any) -> None:
    """Rotate the QA sampling secret from a date on, keeping the old one for replays.

    With a generated secret (TELEMED_QA_SECRET unset) this makes the new one and keeps the old in
    <keys>/qa-secrets/. With TELEMED_QA_SECRET, first set the new secret there and keep the old one in
    <keys>/qa-secrets/; this records the change. Refused if consultations on or after the date are decided."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from qa_audit import services
    from qa_audit.models import SecretRotation
    from server import models  # noqa: F401  # every table, so the decisions' foreign keys resolve
    from server.audit.services import AuditContext
    from server.db.base import utcnow
    from server.db.runner import run_in_session
    from server.keyring import QaSecret, install_qa_secret, keep_retired_qa_secret, load_qa_secrets, new_qa_secret

    settings = _settings()
    day = effective_from.date()

    def record(new: QaSecret, replacing: str | None = None) -> list[SecretRotation]:
        held = load_qa_secrets(settings)

        async def work(session: AsyncSession, s: Settings) -> list[SecretRotation]:
            return await services.record_rotation(session, new=new, held=held, effective_from=day,
                                                  zone=ZoneInfo(s.clinic_time_zone), replacing=replacing,
                                                  ctx=AuditContext(actor_role="cli", request_id="cli"), now=utcnow())

        try:
            return run_in_session(work, settings)
        except services.RotationRefused as exc:
            raise click.ClickException(str(exc)) from None

    if settings.qa_secret is None:  # generated: make the new one here, keeping the old
        old = load_qa_secrets(settings).current
        keep_retired_qa_secret(settings, old)
        new = new_qa_secret()
        rows = install_qa_secret(settings, new, record=lambda: record(new, replacing=old.key_id))
    else:  # configured: the admin has set the new one already
        rows = record(load_qa_secrets(settings).current)
    for row in rows:
        since = "the beginning" if row.effective_from == dt.date.min else row.effective_from.isoformat()
        click.echo(f"QA secret {row.secret_id} draws consultations starting from {since}")
    click.echo("keep every QA secret named in `python -m server qa rotations`: replaying a month needs the one "
               "that drew it")


@qa.command("rotations")
def qa_rotations() -> None:
    """List the recorded QA secret rotations (ids and dates only), and whether this node holds each secret."""
    import datetime as dt

    from qa_audit import services
    from qa_audit.sampling import Rotation
    from server.db.runner import run_in_session
    from server.keyring import load_qa_secrets

    settings = _settings()
    held = load_qa_secrets(settings)

    async def work(session: AsyncSession, s: Settings) -> list[Rotation]:
        return await services.rotation_schedule(session)

    schedule = run_in_session(work, settings, read_only=True)
    if not schedule:
        click.echo(f"no rotation recorded: QA secret {held.current.key_id} draws every consultation")
    for rotation in schedule:
        since = "the beginning" if rotation.effective_from == dt.date.min else rotation.effective_from.isoformat()
        state = "current" if rotation.secret_id == held.current.key_id else (
            "held" if held.get(rotation.secret_id) else "NOT HELD")
        click.echo(f"from {since}: QA secret {rotation.secret_id} ({state})")
