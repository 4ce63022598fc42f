"""The consent PDF: readable Cyrillic, embedded fonts, literal admin text, and the same bytes for the same input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, cast

import pypdf
import pytest
from pypdf.generic import ArrayObject, DictionaryObject

from consent.pdf import (
    DEFAULT_FONT,
    BodyBlock,
    ConsentDocumentInput,
    ConsentFontError,
    body_blocks,
    render_consent_pdf,
)
from consent.texts import LANGUAGES, PURPOSES, default_texts

PATIENT = "Иванова Мария Петровна"
CLINIC = "Клиника «Здоровье»"


def make_document(purpose: str = "telemedicine_care", language: str = "ru", **changes: Any) -> ConsentDocumentInput:
    text = default_texts(purpose)[language]
    document = ConsentDocumentInput(
        document_id=uuid.UUID("6f1c1a2e-8d0b-4b7e-9c51-0d7f3a2b9e44"),
        clinic_name=CLINIC,
        purpose=purpose,
        template_version=3,
        template_sha256=hashlib.sha256(text.body.encode()).hexdigest(),
        language=language,
        title=text.title,
        body=text.body,
        patient_name=PATIENT,
        birth_date=dt.date(1980, 5, 17),
        document_date=dt.date(2026, 11, 22),
    )
    return dataclasses.replace(document, **changes)


def read(pdf: bytes) -> pypdf.PdfReader:
    return pypdf.PdfReader(io.BytesIO(pdf))


def text_of(pdf: bytes) -> str:
    """All pages' text with whitespace collapsed, since reportlab wraps lines wherever they fit."""
    return " ".join(" ".join(page.extract_text() for page in read(pdf).pages).split())


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_render_consent_pdf_text_is_extractable(purpose: str, language: str) -> None:
    document = make_document(purpose, language)
    text = text_of(render_consent_pdf(document))
    assert PATIENT in text
    assert CLINIC in text
    assert " ".join(document.title.split()) in text
    assert str(document.document_id) in text
    assert document.template_sha256[:16] in text
    assert document.template_sha256[16:] not in text


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ru", ["Версия 3", "Дата рождения 17.05.1980", "Дата документа 22.11.2026", "Документ ", "страница 1 из ",
                "подписывается в электронной форме", "равнозначен"]),
        ("en", ["Version 3 · template SHA-256", "Date of birth 17 May 1980", "Document date 22 November 2026",
                "page 1 of ", "This document is signed electronically", "A paper copy signed by hand is equivalent"]),
    ],
)
def test_render_consent_pdf_is_localised(language: str, expected: list[str]) -> None:
    text = text_of(render_consent_pdf(make_document("telemedicine_care", language)))
    for phrase in expected:
        assert phrase in text


def test_render_consent_pdf_numbers_pages_of_total() -> None:
    pdf = render_consent_pdf(make_document("telemedicine_care", "en"))
    pages = read(pdf).pages
    assert len(pages) > 1
    for number, page in enumerate(pages, start=1):
        assert f"page {number} of {len(pages)}" in page.extract_text()


def fonts_of(pdf: bytes) -> dict[str, DictionaryObject]:
    """Every font any page uses, by its PDF name."""
    fonts = {}
    for page in read(pdf).pages:
        resources = cast(DictionaryObject, page["/Resources"])
        for reference in cast(DictionaryObject, resources["/Font"]).values():
            font = cast(DictionaryObject, reference.get_object())
            fonts[str(font["/BaseFont"])] = font
    return fonts


def test_render_consent_pdf_embeds_every_font() -> None:
    fonts = fonts_of(render_consent_pdf(make_document()))
    assert len(fonts) == 2  # regular and bold; no Helvetica sneaking in from a default style
    for font in fonts.values():
        if "/DescendantFonts" in font:
            font = cast(DictionaryObject, cast(ArrayObject, font["/DescendantFonts"])[0].get_object())
        descriptor = cast(DictionaryObject, font["/FontDescriptor"].get_object())
        assert "/FontFile2" in descriptor


def test_render_consent_pdf_metadata_names_the_document_not_the_patient() -> None:
    document = make_document("personal_data", "en")
    reader = read(render_consent_pdf(document))
    metadata = reader.metadata
    assert metadata is not None
    assert metadata.title == document.title
    assert metadata.author == CLINIC
    assert metadata.subject is not None
    assert "personal_data" in metadata.subject
    assert PATIENT not in str(dict(metadata))
    assert "1980" not in str(dict(metadata))


def test_render_consent_pdf_same_input_gives_same_bytes() -> None:
    document = make_document()
    assert render_consent_pdf(document) == render_consent_pdf(document)


def test_render_consent_pdf_same_bytes_in_another_process() -> None:
    """Signing and verifying may happen in different workers; the bytes must not depend on the process."""
    script = (
        "import sys; sys.path.insert(0, '.');"
        "from tests.unit.test_consent_pdf import make_document;"
        "from consent.pdf import render_consent_pdf;"
        "import hashlib; print(hashlib.sha256(render_consent_pdf(make_document())).hexdigest())"
    )
    root = Path(__file__).resolve().parents[2]
    other = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == hashlib.sha256(render_consent_pdf(make_document())).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"patient_name": "Петров Иван Сергеевич"},
        {"birth_date": dt.date(1980, 5, 18)},
        {"document_date": dt.date(2026, 11, 23)},
        {"document_id": uuid.UUID("6f1c1a2e-8d0b-4b7e-9c51-0d7f3a2b9e45")},
        {"template_version": 4},
    ],
)
def test_render_consent_pdf_differs_when_the_document_differs(change: dict[str, Any]) -> None:
    assert render_consent_pdf(make_document(**change)) != render_consent_pdf(make_document())


def test_render_consent_pdf_shows_markup_literally() -> None:
    body = "## Раздел <i>\n\n<b>x</b> & <unclosed\n&amp; &lt; <br/> <font size=40>\n\n- пункт <para>"
    text = text_of(render_consent_pdf(make_document(body=body, patient_name="<b>Иванов</b> & Co", title="A <b")))
    for literal in ("Раздел <i>", "<b>x</b> & <unclosed", "&amp; &lt; <br/> <font size=40>", "пункт <para>",
                    "<b>Иванов</b> & Co", "A <b"):
        assert literal in text


def test_render_consent_pdf_drops_control_characters() -> None:
    text = text_of(render_consent_pdf(make_document(body="до\x00\x07после\tтаб")))
    assert "допосле таб" in text


def test_render_consent_pdf_names_the_missing_font(tmp_path: Path) -> None:
    missing = tmp_path / "NoSuchFont.ttf"
    with pytest.raises(ConsentFontError) as error:
        render_consent_pdf(make_document(), font_path=missing)
    message = str(error.value)
    assert str(missing) in message
    assert "fonts-dejavu-core" in message
    assert "TELEMED_CONSENT_FONT" in message


def test_render_consent_pdf_rejects_a_file_that_is_not_a_font(tmp_path: Path) -> None:
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font at all")
    with pytest.raises(ConsentFontError, match="not a usable TrueType font"):
        render_consent_pdf(make_document(), font_path=broken)


def test_render_consent_pdf_custom_font_serves_as_bold_too(tmp_path: Path) -> None:
    custom = tmp_path / "Custom.ttf"
    custom.write_bytes(DEFAULT_FONT.read_bytes())
    assert len(fonts_of(render_consent_pdf(make_document(), font_path=custom))) == 1


@pytest.mark.parametrize(
    ("language", "mark"), [("ru", "черновик, не для подписания"), ("en", "draft, not for signing")]
)
def test_render_consent_pdf_marks_a_draft_preview(language: str, mark: str) -> None:
    """A draft template has no hash yet; its preview must not pass for a document to sign."""
    text = text_of(render_consent_pdf(make_document(language=language, template_sha256="")))
    assert mark in text
    assert "SHA-256" not in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"language": "de"}, "unsupported consent language"),
        ({"purpose": "marketing"}, "unknown consent purpose"),
        ({"template_sha256": "abc"}, "SHA-256"),
        ({"template_sha256": "z" * 64}, "SHA-256"),
    ],
)
def test_render_consent_pdf_rejects_bad_input(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_consent_pdf(dataclasses.replace(make_document(), **change))


def test_body_blocks_reads_headings_bullets_and_paragraphs() -> None:
    body = "Вступление\nвторая строка\n\n## Раздел\nтекст\n- один\n-  два\nпосле\n\n\n  \n-не пункт\n##не заголовок"
    assert body_blocks(body) == [
        BodyBlock("paragraph", "Вступление\nвторая строка"),
        BodyBlock("heading", "Раздел"),
        BodyBlock("paragraph", "текст"),
        BodyBlock("bullet", "один"),
        BodyBlock("bullet", "два"),
        BodyBlock("paragraph", "после"),
        BodyBlock("paragraph", "-не пункт\n##не заголовок"),
    ]


def test_body_blocks_accepts_windows_line_ends() -> None:
    assert body_blocks("а\r\n\r\n- б\r\n") == [BodyBlock("paragraph", "а"), BodyBlock("bullet", "б")]
