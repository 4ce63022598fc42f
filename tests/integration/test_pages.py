"""The browser pages over HTTP: languages, CSRF, cookie sessions, registration, language links, the second factor."""

from __future__ import annotations

import datetime as dt
import re
import time

import pyotp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from server import keys
from server.auth.models import Role
from server.auth.tokens import decode_access_token
from server.db.base import utcnow
from server.http.principal import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE
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
    with (i18n.LOCALE_DIR / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalogue = read_po(handle, locale="ru")
    assert "Monday" in found  # weekday names are marked where they are defined
    untranslated = sorted(str(message) for message in found
                          if (entry := catalogue.get(message)) is None or not entry.string or entry.fuzzy)
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
    assert (await response.json())["code"] == "csrf_failed"
    assert not set(SESSION_COOKIES) & set(response.cookies)
    assert not set(SESSION_COOKIES) & set(jar(client))


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


async def test_home_with_a_spent_refresh_cookie_signs_out(client: TestClient) -> None:
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


async def test_language_link_saves_the_choice_on_the_account(client: TestClient) -> None:
    await signed_in_patient(client, full_name="Anna Smirnova")
    assert (await client.get("/", headers=RU)).headers["Content-Language"] == "en"  # registered in English
    await client.get("/lang/ru", params={"next": "/"}, headers=EN, allow_redirects=False)
    forget_cookie(client, "telemed_lang")  # another browser of the same account
    home = await client.get("/", headers=EN)
    assert home.headers["Content-Language"] == "ru"
    assert "Здравствуйте, Anna Smirnova" in await home.text()


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
    totp = pyotp.TOTP(secret)
    near = {totp.at(time.time() + offset) for offset in (-60, -30, 0, 30, 60)}
    wrong = next(code for code in ("000000", "111111", "222222") if code not in near)
    refused = await client.post("/account/mfa", data={"csrf_token": form_token(html), "code": wrong},
                                headers=EN, allow_redirects=False)
    assert refused.status == 422
    assert "Код не подходит." in await refused.text()  # staff accounts default to Russian
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
