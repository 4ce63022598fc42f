"""The browser pages over HTTP: languages, CSRF, cookie sessions, registration, language links, the second factor."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from yarl import URL

from server import keys
from server.app import create_app
from server.auth.models import Role, User
from server.auth.throttle import ThrottleUnavailable
from server.auth.tokens import decode_access_token
from server.db.base import utcnow
from server.http.principal import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE
from tests.conftest import make_settings
from tests.factories import PASSWORD, create_staff, register_patient
from web import i18n

EN = {"Accept-Language": "en"}
RU = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}
SESSION_COOKIES = (ACCESS_COOKIE, REFRESH_COOKIE)


def jar(client: TestClient) -> dict[str, str]:
    """The cookies the client would send next, by name."""
    return {morsel.key: morsel.value for morsel in client.session.cookie_jar}


def forget_cookie(client: TestClient, name: str) -> None:
    client.session.cookie_jar.clear(lambda morsel: morsel.key == name)


def replace_cookie(client: TestClient, name: str, value: str) -> None:
    forget_cookie(client, name)
    client.session.cookie_jar.update_cookies({name: value}, client.make_url("/"))


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def page_token(client: TestClient, path: str = "/login") -> str:
    """The CSRF token a form on `path` carries, as a browser would submit it."""
    response = await client.get(path, headers=EN)
    assert response.status == 200, await response.text()
    return form_token(await response.text())


async def form_login(client: TestClient, email: str, password: str = PASSWORD, *, otp: str | None = None,
                     next_path: str = "/") -> ClientResponse:
    data = {"csrf_token": await page_token(client), "email": email, "password": password, "next": next_path}
    if otp is not None:
        data["otp"] = otp
    return await client.post("/login", data=data, headers=EN, allow_redirects=False)


async def signed_in_patient(client: TestClient, full_name: str = "Anna Smirnova") -> str:
    """A patient registered through the API and signed in through the login form; returns their e-mail."""
    patient = await register_patient(client, full_name=full_name, signed_in=False)
    response = await form_login(client, patient.email)
    assert response.status == 303, await response.text()
    return patient.email


def throttle_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sign-in limiter's store cannot be reached: every sign-in step of the throttle raises."""
    async def unavailable(*args: object, **kwargs: object) -> None:
        raise ThrottleUnavailable()

    throttle = client.app[keys.throttle]
    patched = [name for name in ("retry_after", "attempt", "failed", "succeeded") if hasattr(throttle, name)]
    assert patched, "the throttle has none of the sign-in methods this test knows"
    for name in patched:
        monkeypatch.setattr(throttle, name, unavailable)


async def exhaust_sign_in(client: TestClient, email: str) -> None:
    """Spend the account's sign-in attempts with wrong passwords, so the next attempt is refused."""
    for _ in range(client.app[keys.settings].login_attempts_per_account):
        assert (await form_login(client, email, "wrong password")).status == 401


async def stored_locale(client: TestClient, user_id: str) -> str:
    async with client.app[keys.sessions]() as db:
        user = await db.get(User, uuid.UUID(user_id))
        assert user is not None
        return user.locale


def assert_html(response: ClientResponse) -> None:
    assert response.content_type == "text/html", response.content_type


def register_form(token: str, **overrides: str) -> dict[str, str]:
    values = {"csrf_token": token, "full_name": "Ivan Petrov", "birth_date": "1948-03-08",
              "phone": "+79161234567", "email": "ivan.petrov@example.org", "password": PASSWORD, "locale": "en"}
    return {**values, **overrides}


# --- languages ---------------------------------------------------------------------------------------------------


async def test_login_page_renders_in_russian_for_accept_language_ru(client: TestClient) -> None:
    response = await client.get("/login", headers=RU)
    assert response.status == 200
    assert response.headers["Content-Language"] == "ru"
    html = await response.text()
    assert '<html lang="ru">' in html
    assert "Пароль" in html
    assert "Создать учётную запись" in html
    assert "Password" not in html


async def test_login_page_renders_in_english_for_accept_language_en(client: TestClient) -> None:
    response = await client.get("/login", headers=EN)
    assert response.status == 200
    assert response.headers["Content-Language"] == "en"
    html = await response.text()
    assert '<html lang="en">' in html
    assert "Password" in html
    assert "Create an account" in html
    assert "Пароль" not in html


def test_russian_catalogue_translates_every_page_message() -> None:
    """What `pybabel extract` would find (babel.cfg) is all in the Russian catalogue, translated, not fuzzy."""
    found = {message for _, _, message, _, _ in extract_from_dir(
        i18n.LOCALE_DIR.parent, method_map=[("**.py", "python"), ("templates/**.html", "jinja2")])}
    entries = {}
    for po in i18n.catalogue_files("ru"):  # messages.po, patient.po, staff.po, ...
        with po.open("rb") as handle:
            entries.update({m.id: m for m in read_po(handle, locale="ru") if m.id})
    assert "Monday" in found  # weekday names are marked where they are defined
    untranslated = sorted(str(message) for message in found
                          if (entry := entries.get(message)) is None or not entry.string or entry.fuzzy)
    assert untranslated == []


async def test_login_page_falls_back_to_the_clinic_language(client: TestClient) -> None:
    response = await client.get("/login", headers={"Accept-Language": "de-DE"})
    assert response.headers["Content-Language"] == "ru"


async def test_pages_are_not_cached(client: TestClient) -> None:
    response = await client.get("/login", headers=EN)
    assert response.headers["Cache-Control"] == "no-store"


# --- CSRF --------------------------------------------------------------------------------------------------------


async def test_login_page_sets_a_csrf_cookie_matching_the_form(client: TestClient) -> None:
    response = await client.get("/login", headers=EN)
    cookie = response.cookies[CSRF_COOKIE]
    assert cookie.value == form_token(await response.text())
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # plain http in tests; Secure is added behind TLS


async def test_login_page_keeps_the_csrf_token_between_visits(client: TestClient) -> None:
    first = await page_token(client)
    second = await client.get("/login", headers=EN)
    assert CSRF_COOKIE not in second.cookies
    assert form_token(await second.text()) == first


@pytest.mark.parametrize("submitted", [None, "", "not-the-token"])
async def test_login_submit_refuses_missing_or_wrong_csrf_token(client: TestClient, submitted: str | None) -> None:
    patient = await register_patient(client, signed_in=False)
    await page_token(client)  # the browser holds a CSRF cookie
    data = {"email": patient.email, "password": PASSWORD}
    if submitted is not None:
        data["csrf_token"] = submitted
    response = await client.post("/login", data=data, headers=EN, allow_redirects=False)
    assert response.status == 403
    assert_html(response)
    html = await response.text()
    assert "The form has expired" in html
    assert 'href="/login" data-testid="error-back"' in html
    assert not set(SESSION_COOKIES) & set(response.cookies)
    assert not set(SESSION_COOKIES) & set(jar(client))


async def test_a_failed_csrf_check_explains_itself_in_the_page_language(client: TestClient) -> None:
    await page_token(client)
    response = await client.post("/login", data={"csrf_token": "stale", "email": "a@example.org",
                                                 "password": PASSWORD}, headers=RU, allow_redirects=False)
    assert response.status == 403
    assert_html(response)
    assert response.headers["Content-Language"] == "ru"
    html = await response.text()
    assert "Срок действия формы истёк" in html
    assert "Открыть форму заново" in html
    assert "The form has expired" not in html


@pytest.mark.parametrize(("path", "back"), [("/register", "/register"), ("/logout", "/")])
async def test_other_forms_answer_a_failed_csrf_check_with_a_page(client: TestClient, path: str,
                                                                  back: str) -> None:
    await page_token(client)
    data = register_form("stale") if path == "/register" else {"csrf_token": "stale"}
    response = await client.post(path, data=data, headers=EN, allow_redirects=False)
    assert response.status == 403
    assert_html(response)
    html = await response.text()
    assert "The form has expired" in html
    assert f'href="{back}" data-testid="error-back"' in html
    assert not set(SESSION_COOKIES) & set(jar(client))


# --- what is not a form ------------------------------------------------------------------------------------------


FORM_PATHS = ["/login", "/register", "/logout"]


@pytest.mark.parametrize("path", FORM_PATHS)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/octet-stream"])
async def test_a_post_that_is_not_a_form_is_unsupported(client: TestClient, path: str, content_type: str) -> None:
    token = await page_token(client)
    response = await client.post(path, data=f'{{"csrf_token": "{token}"}}'.encode(),
                                 headers={**EN, "Content-Type": content_type}, allow_redirects=False)
    assert response.status == 415
    assert (await response.json())["code"] == "unsupported_media_type"
    assert not set(SESSION_COOKIES) & set(jar(client))


@pytest.mark.parametrize("path", FORM_PATHS)
@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", b"email=\xff\xfe\xfd&password=x"),  # not UTF-8
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"email=a"),
    ("multipart/form-data; boundary=XyZ", b"no boundary in here at all"),
    ("multipart/form-data", b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--XyZ--\r\n"),
    ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Type: text/plain\r\n\r\nno name\r\n--XyZ--\r\n"),
    ("multipart/form-data; boundary=XyZ",
     b"--XyZ\r\nContent-Disposition: form-data; name=email\r\nContent-Type: text/plain\r\n\r\n\xff\xfe\r\n--XyZ--\r\n"),
    ("multipart/form-data; boundary=XyZ",
     b"--XyZ\r\nContent-Disposition: form-data; name=email\r\nContent-Transfer-Encoding: rot13\r\n\r\nx\r\n"
     b"--XyZ--\r\n"),
])
async def test_an_unreadable_form_is_a_bad_request(client: TestClient, path: str, content_type: str,
                                                  body: bytes) -> None:
    await page_token(client)
    response = await client.post(path, data=body, headers={**EN, "Content-Type": content_type},
                                 allow_redirects=False)
    assert response.status == 400, await response.text()
    assert (await response.json())["code"] == "malformed_body"
    assert not set(SESSION_COOKIES) & set(jar(client))


async def test_a_multipart_form_still_signs_in(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    token = await page_token(client)
    boundary = "formboundary42"
    parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                    for name, value in (("csrf_token", token), ("email", patient.email), ("password", PASSWORD)))
    response = await client.post("/login", data=f"{parts}--{boundary}--\r\n".encode(),
                                 headers={**EN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                                 allow_redirects=False)
    assert response.status == 303, await response.text()
    assert set(SESSION_COOKIES) <= set(jar(client))


async def test_login_submit_refuses_a_token_without_its_cookie(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    token = await page_token(client)
    forget_cookie(client, CSRF_COOKIE)
    response = await client.post("/login", data={"csrf_token": token, "email": patient.email, "password": PASSWORD},
                                 headers=EN, allow_redirects=False)
    assert response.status == 403
    assert not set(SESSION_COOKIES) & set(jar(client))


# --- signing in and out ------------------------------------------------------------------------------------------


async def test_login_submit_sets_httponly_strict_cookies_and_redirects(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    response = await form_login(client, patient.email, next_path="/access-log")
    assert response.status == 303
    assert response.headers["Location"] == "/access-log"
    for name in SESSION_COOKIES:
        cookie = response.cookies[name]
        assert cookie.value
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
    assert int(response.cookies[ACCESS_COOKIE]["max-age"]) == 900
    body = await response.text()
    assert response.cookies[ACCESS_COOKIE].value not in body
    assert response.cookies[REFRESH_COOKIE].value not in body


async def test_login_submit_ignores_an_offsite_next(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    response = await form_login(client, patient.email, next_path="https://evil.example/")
    assert response.status == 303
    assert response.headers["Location"] == "/"


async def test_home_greets_the_signed_in_user_by_name(client: TestClient) -> None:
    await signed_in_patient(client, full_name="Anna Smirnova")
    response = await client.get("/", headers=EN)
    assert response.status == 200
    html = await response.text()
    assert "Hello, Anna Smirnova" in html
    assert 'data-testid="physicians"' in html
    assert jar(client)[ACCESS_COOKIE] not in html
    assert jar(client)[REFRESH_COOKIE] not in html


async def test_home_escapes_the_user_name(client: TestClient) -> None:
    await signed_in_patient(client, full_name="<script>alert(1)</script>")
    html = await (await client.get("/", headers=EN)).text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_home_redirects_anonymous_visitors_to_login(client: TestClient) -> None:
    response = await client.get("/", headers=EN, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login"


async def test_login_page_sends_a_signed_in_user_home(client: TestClient) -> None:
    await signed_in_patient(client)
    response = await client.get("/login", headers=EN, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/"


def _expired_access_token(client: TestClient, token: str) -> str:
    app = client.app
    settings = app[keys.settings]
    claims = decode_access_token(token, keys=app[keys.key_material].jwt, issuer=settings.jwt_issuer,
                                 audience=settings.jwt_audience, now=time.time())
    return app[keys.token_issuer].access_token(user_id=claims.user_id, session_id=claims.session_id,
                                               role=claims.role, amr=sorted(claims.amr),
                                               now=utcnow() - dt.timedelta(hours=2))


@pytest.mark.parametrize("access", ["missing", "expired", "garbage"])
async def test_home_renews_the_session_from_the_refresh_cookie(client: TestClient, access: str) -> None:
    await signed_in_patient(client, full_name="Anna Smirnova")
    before = jar(client)
    if access == "missing":
        forget_cookie(client, ACCESS_COOKIE)
    elif access == "expired":
        replace_cookie(client, ACCESS_COOKIE, _expired_access_token(client, before[ACCESS_COOKIE]))
    else:
        replace_cookie(client, ACCESS_COOKIE, "not.a.token")
    response = await client.get("/", headers=EN, allow_redirects=False)
    assert response.status == 200
    assert "Hello, Anna Smirnova" in await response.text()
    rotated = response.cookies[REFRESH_COOKIE]
    assert rotated.value
    assert rotated.value != before[REFRESH_COOKIE]
    assert rotated["httponly"] is True
    assert rotated["samesite"] == "Strict"
    assert response.cookies[ACCESS_COOKIE].value
    after = jar(client)
    assert after[REFRESH_COOKIE] == rotated.value
    # The renewed cookies keep working, and the spent refresh token does not.
    forget_cookie(client, ACCESS_COOKIE)
    assert (await client.get("/", headers=EN, allow_redirects=False)).status == 200
    spent = await client.post("/api/v1/auth/refresh", json={"refresh_token": before[REFRESH_COOKIE]})
    assert spent.status == 401


async def test_home_with_a_spent_refresh_cookie_signs_out(aiohttp_client: Any, tmp_path: Path,
                                                          database_url: str) -> None:
    """A refresh cookie spent earlier (outside the two-tabs race window) is reuse: the session ends."""
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, database_url,
                                                                       refresh_race_seconds=0)))
    await signed_in_patient(client)
    refresh = jar(client)[REFRESH_COOKIE]
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})).status == 200
    forget_cookie(client, ACCESS_COOKIE)
    response = await client.get("/", headers=EN, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login"
    assert REFRESH_COOKIE not in jar(client)


async def test_refusal_after_a_renewal_still_delivers_the_rotated_refresh_cookie(client: TestClient) -> None:
    physician = await create_staff(client, Role.physician, signed_in=False)
    assert (await form_login(client, physician.email)).status == 303
    old_refresh = jar(client)[REFRESH_COOKIE]
    forget_cookie(client, ACCESS_COOKIE)
    # The page renews the session first, then refuses the form for its CSRF token.
    response = await client.post("/account/mfa", data={"csrf_token": "wrong", "code": "123456"}, headers=EN,
                                 allow_redirects=False)
    assert response.status == 403
    assert_html(response)
    assert "Срок действия формы истёк" in await response.text()  # staff accounts default to Russian
    assert 'href="/account/mfa" data-testid="error-back"' in await response.text()
    assert response.cookies[REFRESH_COOKIE].value != old_refresh
    assert (await client.get("/", headers=EN, allow_redirects=False)).status == 200


async def test_logout_clears_the_cookies_and_ends_the_session(client: TestClient) -> None:
    await signed_in_patient(client)
    cookies = jar(client)
    old_access = cookies[ACCESS_COOKIE]
    token = await page_token(client, "/")
    response = await client.post("/logout", data={"csrf_token": token}, headers=EN, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    for name in SESSION_COOKIES:
        assert response.cookies[name].value == ""
        assert response.cookies[name]["max-age"] == "0"
    assert not set(SESSION_COOKIES) & set(jar(client))
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {old_access}"})
    assert me.status == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": cookies[REFRESH_COOKIE]})
    assert refresh.status == 401
    assert (await client.get("/", headers=EN, allow_redirects=False)).headers["Location"] == "/login"


async def test_logout_without_csrf_token_keeps_the_session(client: TestClient) -> None:
    await signed_in_patient(client)
    access = jar(client)[ACCESS_COOKIE]
    response = await client.post("/logout", data={}, headers=EN, allow_redirects=False)
    assert response.status == 403
    assert jar(client)[ACCESS_COOKIE] == access
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})).status == 200


async def test_login_submit_with_bad_password_shows_the_generic_error(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    wrong = await form_login(client, patient.email, "wrong password")
    unknown = await form_login(client, "nobody@example.org", "wrong password")
    assert wrong.status == unknown.status == 401
    wrong_html, unknown_html = await wrong.text(), await unknown.text()
    for html in (wrong_html, unknown_html):
        assert 'data-testid="login-error"' in html
        assert "The e-mail or password is wrong." in html
    assert f'value="{patient.email}"' in wrong_html  # the e-mail is kept, the password is not
    assert "wrong password" not in wrong_html
    assert not set(SESSION_COOKIES) & set(jar(client))


@pytest.mark.parametrize(("email", "password", "otp"), [
    ("nul\x00@example.org", PASSWORD, None),
    ("a" * 290 + "@example.org", PASSWORD, None),
    ("ok@example.org", "p" * 300, None),
    ("ok@example.org", "pass\x00word", None),
    ("ok@example.org", PASSWORD, "12ab56"),
])
async def test_login_submit_with_invalid_input_shows_the_generic_error(client: TestClient, email: str,
                                                                       password: str, otp: str | None) -> None:
    await register_patient(client, email="ok@example.org", signed_in=False)
    response = await form_login(client, email, password, otp=otp)
    assert response.status == 422
    assert_html(response)
    html = await response.text()
    assert 'data-testid="login-error"' in html
    assert "The e-mail or password is wrong." in html
    assert not set(SESSION_COOKIES) & set(jar(client))


@pytest.mark.parametrize(("headers", "message", "not_shown"), [
    (EN, "Signing in is temporarily unavailable. Try again in a minute.", "The e-mail or password is wrong."),
    (RU, "Вход временно недоступен. Попробуйте снова через минуту.", "Неверная эл. почта или пароль."),
])
async def test_login_submit_says_when_signing_in_is_unavailable(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                                headers: dict[str, str], message: str,
                                                                not_shown: str) -> None:
    patient = await register_patient(client, signed_in=False)
    throttle_down(client, monkeypatch)
    data = {"csrf_token": await page_token(client), "email": patient.email, "password": PASSWORD, "next": "/"}
    response = await client.post("/login", data=data, headers=headers, allow_redirects=False)
    assert response.status == 503
    assert_html(response)
    assert response.headers["Retry-After"] == "30"
    html = await response.text()
    assert 'data-testid="login-error"' in html
    assert message in html
    assert not_shown not in html
    assert not set(SESSION_COOKIES) & set(jar(client))


async def test_login_submit_when_throttled_says_to_wait(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    await exhaust_sign_in(client, patient.email)
    response = await form_login(client, patient.email)
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    html = await response.text()
    assert "Too many failed attempts. Wait a few minutes and try again." in html
    assert "The e-mail or password is wrong." not in html


async def test_login_submit_asks_staff_with_a_second_factor_for_the_code(client: TestClient) -> None:
    staff = await create_staff(client, Role.physician, with_totp=True, full_name="Dr Olga Lebedeva",
                               signed_in=False)
    first = await form_login(client, staff.email)
    assert first.status == 401
    html = await first.text()
    assert 'name="otp"' in html
    assert "login-error" not in html
    assert not set(SESSION_COOKIES) & set(jar(client))
    second = await form_login(client, staff.email, otp=pyotp.TOTP(staff.totp_secret or "").now())
    assert second.status == 303
    # Staff accounts default to Russian, whatever the browser asks for.
    assert "Здравствуйте, Dr Olga Lebedeva" in await (await client.get("/", headers=EN)).text()


# --- registration ------------------------------------------------------------------------------------------------


async def test_register_submit_signs_the_new_patient_in(client: TestClient) -> None:
    token = await page_token(client, "/register")
    response = await client.post("/register", data=register_form(token), headers=EN, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    assert response.cookies[ACCESS_COOKIE]["httponly"] is True
    html = await (await client.get("/", headers=EN)).text()
    assert "Hello, Ivan Petrov" in html
    assert "+79161234567" in html


async def test_register_submit_sends_to_login_when_the_limiter_is_down(client: TestClient,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    token = await page_token(client, "/register")
    throttle_down(client, monkeypatch)
    response = await client.post("/register", data=register_form(token), headers=EN, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert not set(SESSION_COOKIES) & set(jar(client))
    monkeypatch.undo()  # the limiter is back: the account was created, and signs in
    assert (await form_login(client, "ivan.petrov@example.org")).status == 303
    assert "Hello, Ivan Petrov" in await (await client.get("/", headers=EN)).text()


async def test_register_submit_sends_to_login_when_signing_in_is_throttled(client: TestClient) -> None:
    await exhaust_sign_in(client, "ivan.petrov@example.org")  # before the account even exists
    token = await page_token(client, "/register")
    response = await client.post("/register", data=register_form(token), headers=EN, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert not set(SESSION_COOKIES) & set(jar(client))
    again = await client.post("/register", data=register_form(token), headers=EN, allow_redirects=False)
    assert again.status == 409  # the account exists


async def test_register_submit_with_invalid_phone_shows_the_field_error(client: TestClient) -> None:
    token = await page_token(client, "/register")
    response = await client.post("/register", data=register_form(token, phone="8 916 123"), headers=EN,
                                 allow_redirects=False)
    assert response.status == 422
    html = await response.text()
    assert 'data-testid="error-phone"' in html
    assert "Enter the mobile number with the country code, for example +79161234567." in html
    assert 'name="phone" aria-invalid="true" aria-describedby="error-phone"' in html
    assert 'data-testid="error-email"' not in html
    assert 'value="Ivan Petrov"' in html  # what was typed is kept
    assert PASSWORD not in html
    assert not set(SESSION_COOKIES) & set(jar(client))


async def test_register_submit_with_a_taken_email_says_it_exists(client: TestClient) -> None:
    existing = await register_patient(client, signed_in=False)
    token = await page_token(client, "/register")
    response = await client.post("/register", data=register_form(token, email=existing.email.upper()),
                                 headers=EN, allow_redirects=False)
    assert response.status == 409
    html = await response.text()
    assert 'data-testid="error-email"' in html
    assert "An account with this e-mail already exists." in html
    assert not set(SESSION_COOKIES) & set(jar(client))


async def test_register_submit_refuses_a_missing_csrf_token(client: TestClient) -> None:
    await page_token(client, "/register")
    data = register_form("")
    response = await client.post("/register", data=data, headers=EN, allow_redirects=False)
    assert response.status == 403
    assert not set(SESSION_COOKIES) & set(jar(client))


# --- language links ----------------------------------------------------------------------------------------------


async def test_language_link_sets_the_cookie_and_returns_to_the_page(client: TestClient) -> None:
    response = await client.get("/lang/ru", params={"next": "/register"}, headers=EN, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/register"
    cookie = response.cookies["telemed_lang"]
    assert cookie.value == "ru"
    assert cookie["samesite"] == "Strict"
    page = await client.get("/register", headers=EN)
    assert page.headers["Content-Language"] == "ru"
    assert "Создать учётную запись" in await page.text()


@pytest.mark.parametrize("target", [
    "https://evil.example", "//evil.example/", "/\\evil.example", "\\\\evil.example", "/\t/evil.example",
    "/\n/evil.example", "javascript:alert(1)", "",
])
async def test_language_link_redirects_only_to_same_site_paths(client: TestClient, target: str) -> None:
    response = await client.get("/lang/en", params={"next": target}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"


async def test_language_link_rejects_an_unknown_language(client: TestClient) -> None:
    response = await client.get("/lang/de", allow_redirects=False)
    assert response.status == 404
    assert "telemed_lang" not in response.cookies


async def test_language_link_changes_the_page_but_not_the_account(client: TestClient) -> None:
    patient = await register_patient(client, full_name="Anna Smirnova", signed_in=False)
    assert (await form_login(client, patient.email)).status == 303
    assert (await client.get("/", headers=RU)).headers["Content-Language"] == "en"  # registered in English
    response = await client.get("/lang/ru", params={"next": "/"}, headers=EN, allow_redirects=False)
    assert response.status == 303
    home = await client.get("/", headers=EN)
    assert home.headers["Content-Language"] == "ru"  # the page choice beats the account's language
    assert "Здравствуйте, Anna Smirnova" in await home.text()
    assert await stored_locale(client, patient.user_id) == "en"  # a GET stores nothing
    forget_cookie(client, "telemed_lang")  # another browser of the same account
    other = await client.get("/", headers=RU)
    assert other.headers["Content-Language"] == "en"
    assert "Hello, Anna Smirnova" in await other.text()


async def test_language_link_head_sets_only_the_cookie(client: TestClient) -> None:
    patient = await register_patient(client, signed_in=False)
    assert (await form_login(client, patient.email)).status == 303
    response = await client.head("/lang/ru", params={"next": "/"}, allow_redirects=False)
    assert response.status == 303
    assert response.cookies["telemed_lang"].value == "ru"
    assert not set(SESSION_COOKIES) & set(response.cookies)
    assert await stored_locale(client, patient.user_id) == "en"


async def test_language_link_switches_a_staff_page_to_english(client: TestClient) -> None:
    staff = await create_staff(client, Role.physician, full_name="Dr Olga Lebedeva", signed_in=False)
    assert (await form_login(client, staff.email)).status == 303
    assert "Здравствуйте, Dr Olga Lebedeva" in await (await client.get("/", headers=EN)).text()
    await client.get("/lang/en", params={"next": "/"}, allow_redirects=False)
    home = await client.get("/", headers=RU)
    assert home.headers["Content-Language"] == "en"
    assert "Hello, Dr Olga Lebedeva" in await home.text()
    assert await stored_locale(client, staff.user_id) == "ru"


# --- the second factor and the admin banner ----------------------------------------------------------------------


def _mfa_secret(html: str) -> str:
    found = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', html)
    assert found, "the page shows no secret"
    return found.group(1)


async def test_mfa_page_enables_the_factor_for_a_correct_code(client: TestClient) -> None:
    physician = await create_staff(client, Role.physician, signed_in=False)
    assert (await form_login(client, physician.email)).status == 303
    page = await client.get("/account/mfa", headers=EN)
    assert page.status == 200
    html = await page.text()
    secret = _mfa_secret(html)
    assert _mfa_secret(await (await client.get("/account/mfa", headers=EN)).text()) == secret  # a reload
    totp = pyotp.TOTP(secret)
    near = {totp.at(time.time() + offset) for offset in (-60, -30, 0, 30, 60)}
    wrong = next(code for code in ("000000", "111111", "222222") if code not in near)
    refused = await client.post("/account/mfa", data={"csrf_token": form_token(html), "code": wrong},
                                headers=EN, allow_redirects=False)
    assert refused.status == 422
    refused_html = await refused.text()
    assert "Код не подходит." in refused_html  # staff accounts default to Russian
    assert _mfa_secret(refused_html) == secret  # shown again, so the next code can simply be tried
    access_before = jar(client)[ACCESS_COOKIE]
    accepted = await client.post("/account/mfa", data={"csrf_token": form_token(html), "code": totp.now()},
                                 headers=EN, allow_redirects=False)
    assert accepted.status == 303
    assert accepted.cookies[ACCESS_COOKIE]["httponly"] is True
    assert jar(client)[ACCESS_COOKIE] != access_before
    done = await client.get("/account/mfa", headers=EN)
    assert 'data-testid="mfa-on"' in await done.text()
    assert 'data-testid="totp-secret"' not in await done.text()
    # From now on signing in takes the code.
    client.session.cookie_jar.clear()
    again = await form_login(client, physician.email)
    assert again.status == 401
    assert 'name="otp"' in await again.text()


async def test_mfa_page_is_not_for_patients(client: TestClient) -> None:
    await signed_in_patient(client)
    response = await client.get("/account/mfa", headers=EN, allow_redirects=False)
    assert response.status == 404
    assert_html(response)
    assert "Page not found" in await response.text()
    token = await page_token(client, "/")
    posted = await client.post("/account/mfa", data={"csrf_token": token, "code": "123456"}, headers=EN,
                               allow_redirects=False)
    assert posted.status == 404


async def test_mfa_submit_sends_anonymous_visitors_to_login(client: TestClient) -> None:
    token = await page_token(client)
    response = await client.post("/account/mfa", data={"csrf_token": token, "code": "123456"}, headers=EN,
                                 allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/account/mfa"


async def test_access_log_is_for_patients_only(client: TestClient) -> None:
    await signed_in_patient(client)
    page = await client.get("/access-log", headers=EN)
    assert page.status == 200
    assert 'data-testid="access-log"' in await page.text()
    client.session.cookie_jar.clear()
    physician = await create_staff(client, Role.physician, signed_in=False)
    assert (await form_login(client, physician.email)).status == 303
    refused = await client.get("/access-log", headers=EN, allow_redirects=False)
    assert refused.status == 404
    assert_html(refused)


async def test_access_log_sends_anonymous_visitors_to_login_and_back(client: TestClient) -> None:
    response = await client.get("/access-log?from=home&page=2", headers=EN, allow_redirects=False)
    assert response.status == 302
    location = URL(response.headers["Location"])
    assert location.path == "/login"
    assert dict(location.query) == {"next": "/access-log?from=home&page=2"}  # the query stays with it
    login = await client.get(response.headers["Location"], headers=EN)
    assert 'name="next" value="/access-log?from=home&amp;page=2"' in await login.text()


async def test_mfa_page_sends_anonymous_visitors_to_login(client: TestClient) -> None:
    response = await client.get("/account/mfa", headers=EN, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/account/mfa"


async def test_home_shows_the_mfa_banner_to_an_admin_without_second_factor(client: TestClient) -> None:
    admin = await create_staff(client, Role.admin, full_name="Admin Without Factor", signed_in=False)
    assert (await form_login(client, admin.email)).status == 303
    html = await (await client.get("/", headers=EN)).text()
    assert 'data-testid="mfa-banner"' in html
    assert "Администраторы обязаны входить со вторым фактором." in html  # the account's language
    assert 'href="/account/mfa"' in html
    assert 'data-testid="users"' not in html  # no account list until the factor is on


async def test_home_lists_accounts_for_an_admin_with_second_factor(client: TestClient) -> None:
    admin = await create_staff(client, Role.admin, with_totp=True, signed_in=False)
    response = await form_login(client, admin.email, otp=pyotp.TOTP(admin.totp_secret or "").now())
    assert response.status == 303
    html = await (await client.get("/", headers=EN)).text()
    assert 'data-testid="mfa-banner"' not in html
    assert 'data-testid="users"' in html
    assert admin.email in html


async def test_admin_home_follows_the_api_rule_when_the_second_factor_is_not_required(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    """`check_access` decides, as for the API: with the requirement off, an admin's listing needs no factor."""
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, database_url,
                                                                       admin_mfa_required=False)))
    admin = await create_staff(client, Role.admin, signed_in=False)
    assert (await form_login(client, admin.email)).status == 303
    html = await (await client.get("/", headers=EN)).text()
    assert 'data-testid="mfa-banner"' not in html
    assert 'data-testid="users"' in html
    assert admin.email in html


async def test_two_tabs_renewing_at_once_stay_signed_in(client: TestClient) -> None:
    """Both tabs present the same refresh cookie: one renews, and the other must not clear the cookies."""
    await signed_in_patient(client)
    forget_cookie(client, ACCESS_COOKIE)
    first, second = await asyncio.gather(client.get("/", headers=EN, allow_redirects=False),
                                         client.get("/", headers=EN, allow_redirects=False))
    assert sorted([first.status, second.status]) == [200, 302]
    loser = first if first.status == 302 else second
    assert REFRESH_COOKIE not in loser.cookies  # nothing cleared: the winner's new cookies stand
    assert (await client.get("/", headers=EN, allow_redirects=False)).status == 200


async def test_register_page_has_the_same_per_address_limit_as_the_api(aiohttp_client: Any, tmp_path: Path,
                                                                        database_url: str) -> None:
    client: TestClient = await aiohttp_client(create_app(make_settings(tmp_path, database_url,
                                                                       registrations_per_ip_per_hour=1)))
    token = await page_token(client, "/register")
    first = await client.post("/register", data=register_form(token, email="one@example.org"), headers=EN,
                              allow_redirects=False)
    assert first.status == 303
    client.session.cookie_jar.clear()
    token = await page_token(client, "/register")
    second = await client.post("/register", data=register_form(token, email="two@example.org"), headers=EN,
                               allow_redirects=False)
    assert second.status == 429
    assert 'data-testid="error-form"' in await second.text()


async def test_patient_chooses_reminder_channels_on_the_home_page(client: TestClient) -> None:
    await signed_in_patient(client)
    home = await client.get("/", headers=EN)
    assert 'data-testid="reminders-form"' in await home.text()
    token = form_token(await home.text())
    saved = await client.post("/account/reminders", data={"csrf_token": token, "sms": "on"}, headers=EN,
                              allow_redirects=False)
    assert saved.status == 303
    me = await (await client.get("/api/v1/me", headers=EN)).json()
    async with client.app[keys.read_sessions]() as session:
        from server.people.models import Patient

        patient = await session.get(Patient, uuid.UUID(me["patient"]["id"]))
    assert patient is not None
    assert (patient.notify_email, patient.notify_sms) == (False, True)
    refused = await client.post("/account/reminders", data={"csrf_token": "wrong", "email": "on"}, headers=EN,
                                allow_redirects=False)
    assert refused.status == 403
