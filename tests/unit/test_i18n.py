"""Choosing the page language and the Russian catalogue."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from web.i18n import choose_locale, translations


def test_locale_page_choice_beats_account_and_browser() -> None:
    request = make_mocked_request("GET", "/", headers={"Accept-Language": "ru", "Cookie": "telemed_lang=en"})
    assert choose_locale(request, account_locale="ru", default="ru") == "en"


def test_locale_account_beats_browser_without_a_page_choice() -> None:
    request = make_mocked_request("GET", "/", headers={"Accept-Language": "en"})
    assert choose_locale(request, account_locale="ru", default="en") == "ru"


def test_locale_ignores_an_unknown_page_choice() -> None:
    request = make_mocked_request("GET", "/", headers={"Accept-Language": "en", "Cookie": "telemed_lang=de"})
    assert choose_locale(request, account_locale="ru", default="en") == "ru"
    assert choose_locale(request, account_locale=None, default="ru") == "en"


def test_locale_from_accept_language_by_quality() -> None:
    request = make_mocked_request("GET", "/", headers={"Accept-Language": "de-DE, en;q=0.5, ru;q=0.9"})
    assert choose_locale(request, account_locale=None, default="en") == "ru"


def test_locale_falls_back_to_clinic_default() -> None:
    request = make_mocked_request("GET", "/", headers={"Accept-Language": "fr;q=bad"})
    assert choose_locale(request, account_locale=None, default="ru") == "ru"


def test_russian_catalogue_translates_pages() -> None:
    assert translations("ru").gettext("Sign in") == "Войти"
    assert translations("en").gettext("Sign in") == "Sign in"
