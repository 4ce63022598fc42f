"""Translations for the pages (Babel catalogues) and choosing the reader's language."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from aiohttp import web
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALES = ("ru", "en")
LANG_COOKIE = "telemed_lang"
LOCALE_DIR = Path(__file__).parent / "locale"


def N_(message: str) -> str:  # `N_`: a name pybabel extracts by default
    """Mark a message for the catalogue where it is defined; it is translated later, where it is shown."""
    return message


@cache
def catalogue_files(locale: str) -> list[Path]:
    """Every .po file of a language: one per area of the pages (shell, patients, staff), merged."""
    return sorted((LOCALE_DIR / locale / "LC_MESSAGES").glob("*.po"))


def translations(locale: str) -> NullTranslations:
    """The catalogue for `locale`, compiled from its .po files in memory (no build step to forget)."""
    files = catalogue_files(locale)
    if not files:
        return NullTranslations()  # English is the source language
    merged: Translations | None = None
    for po in files:
        with po.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        part = Translations(buffer)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    assert merged is not None  # noqa: S101  # files is not empty
    return merged


def _from_accept_language(header: str) -> str | None:
    weighted = []
    for part in header.split(","):
        lang, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        weighted.append((quality, lang.strip().lower()[:2]))
    for _, lang in sorted(weighted, reverse=True):
        if lang in LOCALES:
            return lang
    return None


def choose_locale(request: web.Request, *, account_locale: str | None, default: str) -> str:
    """The language picked on the page (cookie), else the account's, else the browser's, else the clinic's.

    The page choice wins so that the language links work for a signed-in user too, and only in the
    browser where they were used; the account's language is where a choice is not made here.
    """
    for candidate in (request.cookies.get(LANG_COOKIE), account_locale,
                      _from_accept_language(request.headers.get("Accept-Language", ""))):
        if candidate in LOCALES:
            return candidate
    return default
