"""The consent document a patient signs, rendered to PDF.

The PDF's SHA-256 is what the patient signs, so rendering is deterministic: the same input gives the same
bytes (reportlab's invariant mode fixes the creation date and document id, font subsets are named by a
counter). Only within one reportlab and font version, though: a signed document is verified against its
stored bytes, never re-rendered.

The font is a TrueType face embedded as a subset, because the standard PDF fonts have no Cyrillic and a
document whose text cannot be extracted cannot be searched or read aloud.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import re
import string
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from xml.sax.saxutils import escape

from babel.dates import format_date
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from consent.texts import PURPOSES

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
DEFAULT_FONT = FONT_DIR / "DejaVuSans.ttf"
DEFAULT_BOLD_FONT = FONT_DIR / "DejaVuSans-Bold.ttf"

_MARGIN = 20 * mm
_MUTED = HexColor("#555555")


class ConsentFontError(RuntimeError):
    """The consent font is missing or unusable: no consent can be rendered until the deployment is fixed."""


@dataclass(frozen=True)
class ConsentDocumentInput:
    """Everything printed on one consent document; nothing else reaches the PDF."""

    document_id: uuid.UUID
    clinic_name: str
    purpose: str  # one of texts.PURPOSES
    template_version: int
    template_sha256: str  # hex; empty for a draft's preview, which then says it is not for signing
    language: str  # "ru" | "en"
    title: str
    body: str  # the template text, in the format `body_blocks` reads
    patient_name: str
    birth_date: dt.date
    document_date: dt.date  # the date printed on the document


@dataclass(frozen=True)
class _Labels:
    version: str
    draft: str
    patient: str
    birth_date: str
    document_date: str
    closing: str
    paper_signature: str
    footer: str
    date_pattern: str


_LABELS = {
    "ru": _Labels(
        version="Версия {version} · SHA-256 шаблона {sha}…",
        draft="Версия {version} · черновик, не для подписания",
        patient="Пациент",
        birth_date="Дата рождения",
        document_date="Дата документа",
        closing=(
            "Настоящий документ подписывается в электронной форме. Электронная подпись, сведения о её виде "
            "и электронная печать клиники хранятся в информационной системе клиники под идентификатором "
            "документа {document_id}. Экземпляр документа на бумажном носителе, подписанный собственноручно, "
            "равнозначен электронному."
        ),
        paper_signature="Подпись пациента (для бумажного экземпляра): ______________________",
        footer="Документ {document_id} · страница {page} из {pages}",
        date_pattern="dd.MM.yyyy",
    ),
    "en": _Labels(
        version="Version {version} · template SHA-256 {sha}…",
        draft="Version {version} · draft, not for signing",
        patient="Patient",
        birth_date="Date of birth",
        document_date="Document date",
        closing=(
            "This document is signed electronically; the signature, its level and the clinic's seal are kept "
            "in the clinic's records under document id {document_id}. A paper copy signed by hand is "
            "equivalent."
        ),
        paper_signature="Patient's signature (paper copy): ______________________",
        footer="Document {document_id} · page {page} of {pages}",
        date_pattern="d MMMM yyyy",
    ),
}


class BodyBlock(NamedTuple):
    """One piece of a template body: a heading, a bullet item or a paragraph (whose lines are kept)."""

    kind: str  # "heading" | "bullet" | "paragraph"
    text: str


def body_blocks(body: str) -> list[BodyBlock]:
    """Read the admins' textarea format: blank lines part paragraphs, `## ` heads, `- ` bullets, the rest literal.

    A paragraph's line breaks are kept as typed, so what the admin sees in the textarea is what is signed.
    """
    blocks: list[BodyBlock] = []
    for chunk in re.split(r"\n[ \t]*\n", body.replace("\r\n", "\n").replace("\r", "\n")):
        lines: list[str] = []
        for raw in chunk.split("\n"):
            line = raw.strip()
            if raw.startswith(("## ", "- ")):
                if lines:
                    blocks.append(BodyBlock("paragraph", "\n".join(lines)))
                    lines = []
                kind, text = ("heading", raw[3:]) if raw.startswith("## ") else ("bullet", raw[2:])
                if text.strip():
                    blocks.append(BodyBlock(kind, text.strip()))
            elif line:
                lines.append(line)
        if lines:
            blocks.append(BodyBlock("paragraph", "\n".join(lines)))
    return blocks


# Control characters cannot be shown and some break the paragraph parser; tabs and newlines are handled.
_CONTROLS = {code: None for code in (*range(0x20), 0x7F) if chr(code) not in "\t\n"}


def _literal(text: str) -> str:
    """Text as reportlab paragraph markup that shows exactly these characters: admins' `<b>` stays `<b>`."""
    return escape(text.translate(_CONTROLS).replace("\t", " "))


_registered: set[str] = set()
_register_lock = threading.Lock()


def register_font(path: Path) -> str:
    """Register a TTF once per process (parsing it costs more than rendering a page) and return its name (the
    protocol PDFs share it)."""
    name = "Consent-" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    with _register_lock:
        if name in _registered:
            return name
        if not path.is_file():
            raise ConsentFontError(
                f"consent PDF font not found: {path}; install the fonts-dejavu-core package "
                "or set TELEMED_CONSENT_FONT to a TrueType font with Cyrillic"
            )
        try:
            pdfmetrics.registerFont(TTFont(name, str(path)))
        except (TTFError, OSError) as exc:
            raise ConsentFontError(
                f"consent PDF font {path} is not a usable TrueType font ({exc}); install the fonts-dejavu-core "
                "package or set TELEMED_CONSENT_FONT to a TrueType font with Cyrillic"
            ) from exc
        _registered.add(name)
        return name


class _Styles:
    def __init__(self, regular: str, bold: str) -> None:
        base = ParagraphStyle("body", fontName=regular, fontSize=10, leading=13.5, spaceAfter=5)
        self.clinic = ParagraphStyle("clinic", base, fontName=bold, fontSize=11, textColor=_MUTED)
        self.title = ParagraphStyle("title", base, fontName=bold, fontSize=15, leading=19, spaceBefore=6)
        self.version = ParagraphStyle("version", base, fontSize=8, leading=10, textColor=_MUTED, spaceAfter=8)
        self.label = ParagraphStyle("label", base, textColor=_MUTED, spaceAfter=0)
        self.value = ParagraphStyle("value", base, fontName=bold, spaceAfter=0)
        self.heading = ParagraphStyle("heading", base, fontName=bold, fontSize=11, leading=14, spaceBefore=6,
                                      keepWithNext=1)
        self.body = base
        self.bullet = ParagraphStyle("bullet", base, leftIndent=14, bulletIndent=3, bulletFontName=regular,
                                     spaceAfter=3)
        self.closing = ParagraphStyle("closing", base, fontSize=9, leading=12, textColor=_MUTED, spaceBefore=10)


def _patient_table(doc: ConsentDocumentInput, labels: _Labels, styles: _Styles) -> Table:
    def when(day: dt.date) -> str:
        return format_date(day, labels.date_pattern, locale=doc.language)

    rows = [
        (labels.patient, doc.patient_name),
        (labels.birth_date, when(doc.birth_date)),
        (labels.document_date, when(doc.document_date)),
    ]
    table = Table(
        [[Paragraph(_literal(label), styles.label), Paragraph(_literal(value), styles.value)] for label, value in rows],
        colWidths=[45 * mm, None],
        hAlign="LEFT",
    )
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), styles.body.fontName),  # the table's own default is Helvetica, not embedded
        ("BOX", (0, 0), (-1, -1), 0.5, _MUTED),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]))
    return table


def _story(doc: ConsentDocumentInput, labels: _Labels, styles: _Styles) -> list[Flowable]:
    if doc.template_sha256:
        version = labels.version.format(version=doc.template_version, sha=doc.template_sha256[:16])
    else:
        version = labels.draft.format(version=doc.template_version)
    story: list[Flowable] = [
        Paragraph(_literal(doc.clinic_name), styles.clinic),
        Paragraph(_literal(doc.title), styles.title),
        Paragraph(_literal(version), styles.version),
        _patient_table(doc, labels, styles),
        Spacer(1, 4 * mm),
    ]
    for block in body_blocks(doc.body):
        if block.kind == "heading":
            # A heading is kept with what follows; one taller than a page could never be, and reportlab
            # would search for a page break for ever: such a line is set as a plain paragraph.
            style = styles.heading if len(block.text) <= 300 else styles.body
            story.append(Paragraph(_literal(block.text), style))
        elif block.kind == "bullet":
            story.append(Paragraph(_literal(block.text), styles.bullet, bulletText="•"))
        else:
            story.append(Paragraph("<br/>".join(_literal(line) for line in block.text.split("\n")), styles.body))
    # Kept on one page: the statement of how the document is signed must not be split from the signature line.
    story.append(KeepTogether([
        Paragraph(_literal(labels.closing.format(document_id=doc.document_id)), styles.closing),
        Spacer(1, 8 * mm),
        Paragraph(_literal(labels.paper_signature), styles.body),
    ]))
    return story


class NumberedCanvas(Canvas):
    """Holds pages back until the end so each footer can say "page X of Y" in one rendering pass (the protocol
    PDFs use it too)."""

    def __init__(self, *args: Any, footer: Callable[[int, int], str], footer_font: str, footer_y: float = 10 * mm,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._footer = footer
        self._footer_font = footer_font
        self._footer_y = footer_y
        self._held: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._held.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        pages = len(self._held)
        for state in self._held:
            self.__dict__.update(state)
            self.setFont(self._footer_font, 7.5)
            self.setFillColor(_MUTED)
            self.drawCentredString(A4[0] / 2, self._footer_y, self._footer(self._pageNumber, pages))
            super().showPage()
        super().save()


def _check(doc: ConsentDocumentInput) -> None:
    if doc.language not in _LABELS:
        raise ValueError(f"unsupported consent language {doc.language!r}; expected one of {', '.join(_LABELS)}")
    if doc.purpose not in PURPOSES:
        raise ValueError(f"unknown consent purpose {doc.purpose!r}; expected one of {', '.join(PURPOSES)}")
    digest = doc.template_sha256
    if digest and (len(digest) != 64 or not set(digest) <= set(string.hexdigits)):
        raise ValueError("template_sha256 must be a SHA-256 digest in hex, or empty for a draft")


def render_consent_pdf(
    doc: ConsentDocumentInput,
    *,
    font_path: Path = DEFAULT_FONT,
    bold_font_path: Path | None = None,
) -> bytes:
    """The consent document as PDF bytes, identical for identical input, so its hash can be signed.

    `bold_font_path` defaults to DejaVu Sans Bold with the default font and to `font_path` itself with any
    other, so setting one custom font (TELEMED_CONSENT_FONT) is enough.
    """
    _check(doc)
    if bold_font_path is None:
        bold_font_path = DEFAULT_BOLD_FONT if font_path == DEFAULT_FONT else font_path
    regular, bold = register_font(font_path), register_font(bold_font_path)
    labels = _LABELS[doc.language]
    buffer = io.BytesIO()
    template = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=_MARGIN,
        rightMargin=_MARGIN,
        topMargin=_MARGIN,
        bottomMargin=_MARGIN,
        # Metadata repeats only what the header prints about the template, never the patient.
        title=doc.title,
        author=doc.clinic_name,
        subject=f"{doc.purpose} v{doc.template_version} {doc.template_sha256[:16]}",
        creator="telemed",
        lang=doc.language,
        invariant=1,
        initialFontName=regular,  # else the page preamble names Helvetica, a font the PDF would not embed
    )

    def footer(page: int, pages: int) -> str:
        return labels.footer.format(document_id=doc.document_id, page=page, pages=pages)

    canvas = functools.partial(NumberedCanvas, footer=footer, footer_font=regular)
    template.build(_story(doc, labels, _Styles(regular, bold)), canvasmaker=canvas)
    return buffer.getvalue()
