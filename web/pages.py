"""Page handlers: thin, like the API's; forms post back here and call the same services."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from pydantic import ValidationError

from server import keys
from server.auth import services as auth_services
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import tx
from server.http.parsing import field_errors
from server.http.principal import Principal, audit_context
from server.http.problems import ProblemError
from server.http.signin import sign_in, totp_key
from server.people import schemas as people_schemas
from server.people import services as people
from server.scheduling import services as scheduling
from web import i18n, session

HERE = Path(__file__).parent


def _safe_next(target: str | None) -> str:
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


async def _form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    session.check_form_csrf(request, str(data.get("csrf_token", "")) or None)
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


async def home(request: web.Request) -> web.Response:
    principal = await session.page_principal(request)
    if principal is None:
        raise web.HTTPFound("/login")
    context: dict[str, Any] = {}
    async with tx(request) as db:
        context["profile"] = await people.profile(db, user_id=principal.user_id)
        if principal.role is Role.physician:
            physician = context["profile"].physician
            context["availability"] = await scheduling.weekly_availability(db, physician_id=physician.id)
        if principal.role is Role.admin and principal.has_second_factor:
            context["users"] = await people.list_users(db, role=None, limit=200, offset=0,
                                                       ctx=audit_context(request), now=utcnow())
        if principal.role is Role.patient:
            context["physicians"] = await people.list_physicians(db)
    context["needs_mfa"] = (principal.role is Role.admin and request.app[keys.settings].admin_mfa_required
                            and not principal.has_second_factor)
    return await render(request, "home.html", context)


async def login_page(request: web.Request) -> web.Response:
    if await session.page_principal(request) is not None:
        raise web.HTTPFound("/")
    return await render(request, "login.html", {"email": "", "error": None, "ask_otp": False,
                                                "next": _safe_next(request.query.get("next"))})


async def login_submit(request: web.Request) -> web.Response:
    form = await _form(request)
    email, password, otp = form.get("email", "").strip(), form.get("password", ""), form.get("otp", "").strip()
    target = _safe_next(form.get("next"))
    context: dict[str, Any] = {"email": email, "ask_otp": bool(otp), "next": target}
    try:
        result = await sign_in(request, email=email, password=password, otp=otp or None)
    except ProblemError as problem:
        if problem.code == "otp_required":
            return await render(request, "login.html", {**context, "ask_otp": True, "error": None}, status=401)
        error = "too_many" if problem.status == 429 else "invalid"
        return await render(request, "login.html", {**context, "error": error}, status=problem.status)
    session.remember_tokens(request, result.pair)
    raise web.HTTPSeeOther(target)


async def register_page(request: web.Request) -> web.Response:
    return await render(request, "register.html", {"values": {}, "errors": {}})


async def register_submit(request: web.Request) -> web.Response:
    form = await _form(request)
    values = {k: form.get(k, "") for k in ("email", "full_name", "birth_date", "phone", "locale")}
    try:
        body = people_schemas.RegisterIn.model_validate({**values, "password": form.get("password", ""),
                                                         "locale": values["locale"] or "ru"})
    except ValidationError as exc:
        errors = {e.field: e.message for e in field_errors(exc)}
        return await render(request, "register.html", {"values": values, "errors": errors}, status=422)
    try:
        async with tx(request) as db:
            await people.register_patient(db, passwords=request.app[keys.passwords], email=body.email,
                                          password=body.password, full_name=body.full_name,
                                          birth_date=body.birth_date, phone=body.phone, locale=body.locale,
                                          ctx=audit_context(request), now=utcnow())
    except people.EmailTaken:
        return await render(request, "register.html", {"values": values, "errors": {"email": "taken"}},
                            status=409)
    result = await sign_in(request, email=body.email, password=body.password, otp=None)
    session.remember_tokens(request, result.pair)
    raise web.HTTPSeeOther("/")


async def logout_submit(request: web.Request) -> web.Response:
    await _form(request)
    principal = await session.page_principal(request)
    if principal is not None:
        async with tx(request) as db:
            await auth_services.logout(db, session_id=principal.session_id, ctx=audit_context(request), now=utcnow())
    session.forget_tokens(request)
    raise web.HTTPSeeOther("/login")


async def _staff(request: web.Request) -> Principal:
    principal = await session.page_principal(request)
    if principal is None:
        raise web.HTTPFound("/login?next=" + request.path)
    if principal.role is Role.patient:
        raise web.HTTPNotFound()
    return principal


async def mfa_page(request: web.Request) -> web.Response:
    principal = await _staff(request)
    async with tx(request) as db:
        found = await people.profile(db, user_id=principal.user_id)
        enrolment = None
        if found.user.totp_enabled_at is None:
            enrolment = await auth_services.begin_totp(db, user_id=principal.user_id, totp_key=totp_key(request))
    return await render(request, "mfa.html", {"enrolment": enrolment, "enabled": enrolment is None, "error": None})


async def mfa_submit(request: web.Request) -> web.Response:
    principal = await _staff(request)
    form = await _form(request)
    try:
        async with tx(request) as db:
            token = await auth_services.confirm_totp(
                db, issuer=request.app[keys.token_issuer], user_id=principal.user_id,
                session_id=principal.session_id, code=form.get("code", "").strip(), totp_key=totp_key(request),
                ctx=audit_context(request), now=utcnow())
    except ProblemError as problem:
        return await render(request, "mfa.html", {"enrolment": None, "enabled": False, "error": problem.code},
                            status=problem.status)
    session.remember_access_token(request, token)
    raise web.HTTPSeeOther("/")


async def access_log_page(request: web.Request) -> web.Response:
    principal = await session.page_principal(request)
    if principal is None:
        raise web.HTTPFound("/login?next=/access-log")
    if principal.patient_id is None:
        raise web.HTTPNotFound()
    from server.audit import services as audit

    async with tx(request) as db:
        rows = await audit.access_log(db, patient_id=principal.patient_id, patient_user_id=principal.user_id,
                                      limit=100)
    return await render(request, "access_log.html", {"items": [item for _, item in rows]})


async def set_language(request: web.Request) -> web.Response:
    lang = request.match_info["lang"]
    if lang not in i18n.LOCALES:
        raise web.HTTPNotFound()
    response = web.HTTPSeeOther(_safe_next(request.query.get("next")))
    response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, samesite="Strict", path="/", httponly=True)
    principal = await session.page_principal(request)
    if principal is not None:
        async with tx(request) as db:
            found = await people.profile(db, user_id=principal.user_id)
            found.user.locale = lang
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
    app.router.add_get("/", home, name="home")
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login_submit)
    app.router.add_get("/register", register_page, name="register")
    app.router.add_post("/register", register_submit)
    app.router.add_post("/logout", logout_submit, name="logout")
    app.router.add_get("/account/mfa", mfa_page, name="mfa")
    app.router.add_post("/account/mfa", mfa_submit)
    app.router.add_get("/access-log", access_log_page, name="access_log")
    app.router.add_get("/lang/{lang}", set_language, name="language")
