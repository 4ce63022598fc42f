"""A new patient on a phone, in Russian: registers, is greeted, signs out and in, switches to English."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from server.http.principal import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE
from tests.factories import PASSWORD

SCREENSHOT = Path("/tmp/e2e-home.png")  # noqa: S108  # a fixed place to look at after a run
NAME = "Мария Кузнецова"
EMAIL = "maria.kuznetsova@example.org"


def _sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login")
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    page.get_by_label("Эл. почта").fill(EMAIL)
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(f"{base}/")


@pytest.mark.e2e
def test_patient_registers_signs_out_and_in_and_switches_language(live_server: str,
                                                                   phone_browser: BrowserContext) -> None:
    base = live_server
    page = phone_browser.new_page()

    # Registration, in Russian because the phone asks for it.
    page.goto(f"{base}/register")
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("heading", name="Создать учётную запись")).to_be_visible()
    page.get_by_label("ФИО").fill(NAME)
    page.get_by_label("Дата рождения").fill("1952-07-14")
    page.get_by_label("Мобильный телефон").fill("+79161234567")
    page.get_by_label("Эл. почта").fill(EMAIL)
    page.get_by_label("Пароль (не менее 10 символов)").fill(PASSWORD)
    expect(page.locator("select[name=locale]")).to_have_value("ru")  # preselected from the page language
    page.get_by_role("button", name="Создать учётную запись").click()

    page.wait_for_url(f"{base}/")
    expect(page.get_by_test_id("greeting")).to_have_text(f"Здравствуйте, {NAME}")
    expect(page.get_by_test_id("who")).to_have_text(NAME)
    expect(page.get_by_text("+79161234567")).to_be_visible()

    # The session lives in cookies that scripts cannot read.
    script_cookies = page.evaluate("document.cookie")
    assert ACCESS_COOKIE not in script_cookies
    assert REFRESH_COOKIE not in script_cookies
    assert CSRF_COOKIE in script_cookies  # the double-submit token is meant to be readable
    stored = {cookie["name"]: cookie for cookie in phone_browser.cookies(base)}
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        assert stored[name]["httpOnly"] is True
        assert stored[name]["sameSite"] == "Strict"

    page.screenshot(path=str(SCREENSHOT), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the home page scrolls sideways on a phone ({width}px)"

    # Out, and back in.
    page.get_by_role("button", name="Выйти").click()
    page.wait_for_url(f"{base}/login")
    expect(page.get_by_role("heading", name="Войти")).to_be_visible()
    assert ACCESS_COOKIE not in {cookie["name"] for cookie in phone_browser.cookies(base)}
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/login")  # the home page is closed again

    _sign_in(page, base)
    expect(page.get_by_test_id("greeting")).to_have_text(f"Здравствуйте, {NAME}")

    # English, on this page and remembered by this browser (a cookie; the account keeps its language).
    page.get_by_role("link", name="English").click()
    page.wait_for_url(f"{base}/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("greeting")).to_have_text(f"Hello, {NAME}")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("heading", name="Your details")).to_be_visible()
    page.reload()
    expect(page.get_by_test_id("greeting")).to_have_text(re.compile(r"^Hello, "))
