"""Page handlers: thin, like the API's; forms post back here and call the same services."""

from __future__ import annotations

import datetime as dt
import functools
import time
import zlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
import jinja2
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from server import keys
from server.auth import services as auth_services
from server.auth.models import STAFF_ROLES, Role
from server.auth.schemas import LoginIn
from server.db.base import utcnow
from server.http.context import tx
from server.http.middlewares import is_secure
from server.http.parsing import field_errors, validate
from server.http.principal import Principal, audit_context, check_access
from server.http.problems import Forbidden, MalformedBody, ProblemError, UnsupportedMediaType, ValidationFailed
from server.http.signin import allow_registration, sign_in, totp_key
from server.people import schemas as people_schemas
from server.people import services as people
from server.scheduling import availability as scheduling
from web import i18n, session

HERE = Path(__file__).parent


def safe_next(target: str | None) -> str:
    """Only same-site paths, so a crafted link cannot bounce a patient to another site.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so a slash, a tab and
    `/evil.example` would become `//evil.example`: any control character, space or backslash, or a leading
    `//`, falls back to `/`.
    """
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(char) < 0x21 or ord(char) == 0x7F for char in target)):
        return "/"
    return target


async def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    principal = await session.page_principal(request)
    settings = request.app[keys.settings]
    locale = i18n.choose_locale(request, account_locale=principal.locale if principal else None,
                                default=settings.default_locale)
    catalogue = i18n.translations(locale)
    base = {"_": catalogue.gettext, "locale": locale, "user": principal, "csrf_token": session.csrf_token(request),
            "path": request.path_qs, "Role": Role}
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    response.headers["Content-Language"] = locale
    response.headers["Cache-Control"] = "no-store"
    return response


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# What aiohttp raises for a body it cannot read as a form: undecodable text (UnicodeDecodeError is a
# ValueError), an unknown charset (LookupError), a broken or unknown multipart encoding (ValueError,
# RuntimeError, zlib.error), malformed part headers (HttpProcessingError).
_UNREADABLE_FORM = (ValueError, LookupError, RuntimeError, zlib.error, HttpProcessingError)


class PageAnswer(Exception):
    """A complete response (an HTML refusal) raised from a helper; `page_handler` returns it as the answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page_handler(handler: PageHandler) -> PageHandler:
    """Let helpers answer with a rendered page (a refusal) by raising `PageAnswer`."""
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageAnswer as answer:
            return answer.response

    return wrapped


async def _refusal(request: web.Request, kind: str, *, status: int, back: str) -> PageAnswer:
    return PageAnswer(await render(request, "error.html", {"kind": kind, "back": back}, status=status))


async def read_form(request: web.Request, *, back: str | None = None) -> dict[str, str]:
    """The posted form's text fields, once its CSRF token matches the cookie.

    415 for a body that is not a form and 400 for one that cannot be read (problem documents: a browser
    never sends these); a failed CSRF check is a browser's stale page, so it gets a page that says so and
    links `back` (by default this form's own page).
    """
    if request.content_type not in FORM_TYPES:
        raise UnsupportedMediaType("Send the form as application/x-www-form-urlencoded or multipart/form-data",
                                   title="Unsupported media type")
    try:
        data = await request.post()
    except _UNREADABLE_FORM:
        raise MalformedBody("The form data cannot be read", title="The request body is not a valid form") from None
    try:
        session.check_form_csrf(request, str(data.get("csrf_token", "")) or None)
    except Forbidden:
        raise await _refusal(request, "csrf", status=403, back=back or request.path) from None
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


@dataclass
class UploadForm:
    """A multipart form with one file: its text fields, the file's bytes (None: no file chosen), and whether the
    file was larger than allowed (then `data` is None and the rest of the body was not read)."""

    fields: dict[str, str]
    data: bytes | None
    too_large: bool = False


FIELD_LIMIT = 65_536  # a text field of these forms is a note or an id, never more
FIELDS_MAX = 20  # an upload form has a handful of text fields besides its file


async def read_upload_form(request: web.Request, *, file_field: str, limit: int,
                           back: str | None = None) -> UploadForm:
    """A multipart form with one file, streamed, so the file may be larger than a request body otherwise may
    (`client_max_size`) but never larger than `limit`. The CSRF token is checked as `read_form` does; put its
    field before the file in the form, so a refused upload is not read to the end."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("Send the form as multipart/form-data", title="Unsupported media type")
    fields: dict[str, str] = {}
    data: bytes | None = None
    too_large = False
    text_bytes = 0
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            if part.name == file_field and part.filename is not None:
                data, too_large = await _read_part(part, limit)
                if too_large:
                    break
            else:
                value, over = await _read_part(part, FIELD_LIMIT)
                if over or value is None:
                    raise MalformedBody("A form field is too long", title="The request body is not a valid form")
                text_bytes += len(value)
                if len(fields) >= FIELDS_MAX or text_bytes > FIELD_LIMIT * 2:  # a form of a few short fields
                    raise ProblemError("The form has too many fields", status=413, code="body_too_large",
                                       title="Request body too large")
                fields.setdefault(part.name, value.decode(part.get_charset("utf-8")))
    except _UNREADABLE_FORM:
        raise MalformedBody("The form data cannot be read", title="The request body is not a valid form") from None
    try:
        session.check_form_csrf(request, fields.get("csrf_token") or None)
    except Forbidden:
        raise await _refusal(request, "csrf", status=403, back=back or request.path) from None
    return UploadForm(fields, data if data else None, too_large)


async def _read_part(part: BodyPartReader, limit: int) -> tuple[bytes | None, bool]:
    """The part's bytes, or (None, True) as soon as it passes `limit`."""
    chunks, size = [], 0
    while chunk := await part.read_chunk(65_536):
        size += len(chunk)
        if size > limit:
            return None, True
        chunks.append(chunk)
    return b"".join(chunks), False


def _may(request: web.Request, principal: Principal, *, roles: Collection[Role] | None = None,
         allow_mfa_pending: bool = False) -> bool:
    """Whether the API's access rule lets `principal` in."""
    try:
        check_access(principal, roles=roles, allow_mfa_pending=allow_mfa_pending,
                     admin_mfa_required=request.app[keys.settings].admin_mfa_required)
    except Forbidden:
        return False
    return True


async def page_user(request: web.Request, *, roles: Collection[Role] | None = None,
                    allow_mfa_pending: bool = False) -> Principal:
    """The signed-in user a page is for, by the same rule as the API (`check_access`).

    Anonymous visitors go to the login page (and come back here after it); a role the page is not for
    gets a 404 page, so patients do not learn staff pages exist; an admin who still owes the second
    factor is sent to set it up.
    """
    principal = await session.page_principal(request)
    if principal is None:
        target = "/login" if request.path == "/" else "/login?next=" + quote(request.path_qs, safe="/")
        raise web.HTTPFound(target) if request.method in ("GET", "HEAD") else web.HTTPSeeOther(target)
    try:
        check_access(principal, roles=roles, allow_mfa_pending=allow_mfa_pending,
                     admin_mfa_required=request.app[keys.settings].admin_mfa_required)
    except Forbidden as refused:
        if refused.code == "mfa_required":
            raise web.HTTPSeeOther("/account/mfa") from None
        raise await _refusal(request, "not_found", status=404, back="/") from None
    return principal


async def home(request: web.Request) -> web.Response:
    principal = await page_user(request, allow_mfa_pending=True)  # the banner leads to the second factor
    context: dict[str, Any] = {}
    async with tx(request) as db:
        context["profile"] = await people.profile(db, user_id=principal.user_id)
        if principal.role is Role.physician:
            physician = context["profile"].physician
            context["availability"] = await scheduling.weekly_availability(db, physician_id=physician.id)
        if _may(request, principal, roles={Role.admin}):
            context["users"] = await people.list_users(db, role=None, limit=200, offset=0,
                                                       ctx=audit_context(request), now=utcnow())
        if principal.role is Role.patient:
            context["physicians"] = await people.list_physicians(db)
    context["needs_mfa"] = principal.role is Role.admin and not _may(request, principal)
    context["saved"] = request.query.get("saved")
    return await render(request, "home.html", context)


async def login_page(request: web.Request) -> web.Response:
    if await session.page_principal(request) is not None:
        raise web.HTTPFound("/")
    return await render(request, "login.html", {"email": "", "error": None, "ask_otp": False,
                                                "next": safe_next(request.query.get("next"))})


# Which message the login page shows for a problem from `sign_in` (anything else: the generic one).
_LOGIN_ERRORS = {"too_many_requests": "too_many", "sign_in_unavailable": "unavailable"}


async def login_submit(request: web.Request) -> web.Response:
    form = await read_form(request)
    email, password, otp = form.get("email", "").strip(), form.get("password", ""), form.get("otp", "").strip()
    target = safe_next(form.get("next"))
    context: dict[str, Any] = {"email": email, "ask_otp": bool(otp), "next": target}
    try:  # the API's rules: lengths, the code's format, no control characters (PostgreSQL refuses NUL)
        credentials = validate(LoginIn, {"email": email, "password": password, "otp": otp or None})
    except ValidationFailed:  # the same message as a wrong password: nothing to learn from it
        return await render(request, "login.html", {**context, "error": "invalid"}, status=422)
    try:
        result = await sign_in(request, email=credentials.email, password=credentials.password,
                               otp=credentials.otp)
    except ProblemError as problem:
        if problem.code == "otp_required":
            return await render(request, "login.html", {**context, "ask_otp": True, "error": None}, status=401)
        error = _LOGIN_ERRORS.get(problem.code, "invalid")
        response = await render(request, "login.html", {**context, "error": error}, status=problem.status)
        if "Retry-After" in problem.headers:
            response.headers["Retry-After"] = problem.headers["Retry-After"]
        return response
    session.remember_tokens(request, result.pair)
    raise web.HTTPSeeOther(target)


async def register_page(request: web.Request) -> web.Response:
    return await render(request, "register.html", {"values": {}, "errors": {}})


async def register_submit(request: web.Request) -> web.Response:
    form = await read_form(request)
    values = {k: form.get(k, "") for k in ("email", "full_name", "birth_date", "phone", "locale")}
    try:
        body = people_schemas.RegisterIn.model_validate({**values, "password": form.get("password", ""),
                                                         "locale": values["locale"] or "ru"})
    except ValidationError as exc:
        errors = {e.field: e.message for e in field_errors(exc)}
        return await render(request, "register.html", {"values": values, "errors": errors}, status=422)
    try:
        await allow_registration(request)  # the same per-address limit as the API
    except ProblemError as problem:
        return await render(request, "register.html", {"values": values, "errors": {"form": "too_many"}},
                            status=problem.status)
    try:
        async with tx(request) as db:
            await people.register_patient(db, passwords=request.app[keys.passwords], email=body.email,
                                          password=body.password, full_name=body.full_name,
                                          birth_date=body.birth_date, phone=body.phone, locale=body.locale,
                                          ctx=audit_context(request), now=utcnow())
    except people.EmailTaken:
        return await render(request, "register.html", {"values": values, "errors": {"email": "taken"}},
                            status=409)
    try:
        result = await sign_in(request, email=body.email, password=body.password, otp=None)
    except ProblemError:  # throttled or the limiter is down: the account exists, so sign in by hand later
        raise web.HTTPSeeOther("/login") from None
    session.remember_tokens(request, result.pair)
    raise web.HTTPSeeOther("/")


async def logout_submit(request: web.Request) -> web.Response:
    await read_form(request, back="/")
    principal = await session.page_principal(request)
    if principal is not None:
        async with tx(request) as db:
            await auth_services.logout(db, session_id=principal.session_id, ctx=audit_context(request), now=utcnow())
    session.forget_tokens(request)
    raise web.HTTPSeeOther("/login")


async def _mfa_state(request: web.Request, principal: Principal) -> dict[str, Any]:
    """The second factor's page: on, or the pending secret to add (the same one until it is confirmed)."""
    async with tx(request) as db:
        found = await people.profile(db, user_id=principal.user_id)
        if found.user.totp_enabled_at is not None:
            return {"enrolment": None, "enabled": True}
        enrolment = await auth_services.begin_totp(db, user_id=principal.user_id, totp_key=totp_key(request))
    return {"enrolment": enrolment, "enabled": False}


async def mfa_page(request: web.Request) -> web.Response:
    principal = await page_user(request, roles=STAFF_ROLES, allow_mfa_pending=True)
    return await render(request, "mfa.html", {**await _mfa_state(request, principal), "error": None})


async def mfa_submit(request: web.Request) -> web.Response:
    principal = await page_user(request, roles=STAFF_ROLES, allow_mfa_pending=True)
    form = await read_form(request)
    try:
        async with tx(request) as db:
            token = await auth_services.confirm_totp(
                db, issuer=request.app[keys.token_issuer], user_id=principal.user_id,
                session_id=principal.session_id, code=form.get("code", "").strip(), totp_key=totp_key(request),
                ctx=audit_context(request), now=utcnow())
    except ProblemError as problem:  # show the secret again, so the user can simply try the next code
        state = await _mfa_state(request, principal)
        return await render(request, "mfa.html", {**state, "error": problem.code}, status=problem.status)
    session.remember_access_token(request, token)
    raise web.HTTPSeeOther("/")


async def reminders_submit(request: web.Request) -> web.Response:
    """The patient chooses e-mail and/or SMS reminders (unticked boxes are simply absent from the form)."""
    principal = await page_user(request, roles=[Role.patient])
    form = await read_form(request, back="/")
    if principal.patient_id is None:
        raise web.HTTPNotFound()
    async with tx(request) as db:
        await people.choose_channels(db, patient_id=principal.patient_id, email=form.get("email") == "on",
                                     sms=form.get("sms") == "on", ctx=audit_context(request), now=utcnow())
    raise web.HTTPSeeOther("/?saved=reminders")


async def access_log_page(request: web.Request) -> web.Response:
    principal = await page_user(request, roles={Role.patient})
    if principal.patient_id is None:  # a patient account always has its record; be safe anyway
        raise await _refusal(request, "not_found", status=404, back="/")
    from server.audit import services as audit

    async with tx(request) as db:
        rows = await audit.access_log(db, patient_id=principal.patient_id, patient_user_id=principal.user_id,
                                      limit=100)
    return await render(request, "access_log.html", {"items": [item for _, item in rows]})


async def set_language(request: web.Request) -> web.Response:
    """Only the cookie: a GET (or HEAD, or a prefetch) changes nothing stored. The page choice beats the
    account's language (`i18n.choose_locale`); the account's own setting is changed elsewhere, by a form."""
    lang = request.match_info["lang"]
    if lang not in i18n.LOCALES:
        raise web.HTTPNotFound()
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, samesite="Strict", path="/", httponly=True,
                        secure=is_secure(request))
    raise response


WEEKDAYS = (i18n.N_("Monday"), i18n.N_("Tuesday"), i18n.N_("Wednesday"), i18n.N_("Thursday"), i18n.N_("Friday"),
            i18n.N_("Saturday"), i18n.N_("Sunday"))


def setup(app: web.Application) -> None:
    """Templates, static files and page routes; called once by the composition root."""
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"),
                               autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.globals.update(WEEKDAYS=WEEKDAYS, static_version=str(int(time.time())), date=dt.date)
    # Outermost, so cookies also reach the problem documents the error middleware makes of a refusal: a
    # refresh token rotated before a refusal (say, a failed CSRF check) must not be lost, or the browser
    # would present the spent one next time and end its own session.
    app.middlewares.insert(0, session.apply_cookies)
    app.router.add_static("/static/", HERE / "static", name="static", append_version=False)
    app.router.add_get("/", page_handler(home), name="home")
    app.router.add_get("/login", page_handler(login_page), name="login")
    app.router.add_post("/login", page_handler(login_submit))
    app.router.add_get("/register", page_handler(register_page), name="register")
    app.router.add_post("/register", page_handler(register_submit))
    app.router.add_post("/logout", page_handler(logout_submit), name="logout")
    app.router.add_get("/account/mfa", page_handler(mfa_page), name="mfa")
    app.router.add_post("/account/mfa", page_handler(mfa_submit))
    app.router.add_get("/access-log", page_handler(access_log_page), name="access_log")
    app.router.add_post("/account/reminders", page_handler(reminders_submit))
    app.router.add_get("/lang/{lang}", page_handler(set_language), name="language")
    from web import call_pages, consent_pages, guest_pages, patient_pages, record_pages, staff_pages  # built on these

    call_pages.setup(app)
    guest_pages.setup(app)
    consent_pages.setup(app)
    patient_pages.setup(app)
    staff_pages.setup(app)
    record_pages.setup(app)
    from web.qa_pages import physician as qa_physician
    from web.qa_pages import queue as qa_queue
    from web.qa_pages import reports as qa_reports
    from web.qa_pages import review as qa_review

    qa_queue.setup(app)  # first: it registers the template globals every QA page uses
    qa_review.setup(app)
    qa_physician.setup(app)
    qa_reports.setup(app)
