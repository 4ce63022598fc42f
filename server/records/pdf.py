"""The protocol as a PDF: the canonical document a physician signs and an auditor reads years later.

Deterministic like the consent PDF (consent/pdf.py, whose approach this follows): reportlab's invariant
mode, the DejaVu face embedded as a subset so Cyrillic is searchable, and nothing in it that the input does
not fix. A signed PDF is verified against its stored bytes, never re-rendered.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from babel.dates import format_date, format_time
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from consent.pdf import DEFAULT_BOLD_FONT, DEFAULT_FONT, NumberedCanvas, register_font
from server.records.content import ProtocolContent
from server.records.texts import LABELS, Labels

_MARGIN = 18 * mm
_MUTED = HexColor("#555555")


@dataclass(frozen=True)
class ProtocolDocumentInput:
    """Everything printed on one protocol; nothing else reaches the PDF."""

    document_id: uuid.UUID
    clinic_name: str
    language: str  # "ru" | "en"
    version: int
    amendment_reason: str | None
    kind: str  # "primary" | "repeat"
    starts_at: dt.datetime  # aware, in the clinic's zone: printed as its wall-clock time
    condition: str
    patient_name: str
    birth_date: dt.date
    physician_name: str
    physician_specialty: str
    physician_licence: str
    content: ProtocolContent


_CONTROLS = {code: None for code in (*range(0x20), 0x7F) if chr(code) not in "\t\n"}


def _markup(text: str) -> str:
    """Exactly these characters as paragraph markup, line breaks kept as typed."""
    lines = escape(text.translate(_CONTROLS).replace("\t", " ")).split("\n")
    return "<br/>".join(lines)


class _Styles:
    def __init__(self, regular: str, bold: str) -> None:
        base = ParagraphStyle("body", fontName=regular, fontSize=10, leading=13.5, spaceAfter=4)
        self.clinic = ParagraphStyle("clinic", base, fontName=bold, fontSize=11, textColor=_MUTED)
        self.title = ParagraphStyle("title", base, fontName=bold, fontSize=15, leading=19, spaceBefore=4)
        self.meta = ParagraphStyle("meta", base, fontSize=8.5, leading=11, textColor=_MUTED)
        self.heading = ParagraphStyle("heading", base, fontName=bold, fontSize=11, leading=14, spaceBefore=7,
                                      keepWithNext=1)
        self.cell = ParagraphStyle("cell", base, fontSize=9, leading=11.5, spaceAfter=0)
        self.label = ParagraphStyle("label", self.cell, textColor=_MUTED)
        self.value = ParagraphStyle("value", self.cell, fontName=bold)
        self.body = base
        self.closing = ParagraphStyle("closing", base, fontSize=8.5, leading=11, textColor=_MUTED, spaceBefore=10)


def _grid(rows: list[list[Paragraph]], widths: list[float | None], font: str, *, header: bool = False) -> Table:
    table = Table(rows, colWidths=widths, hAlign="LEFT", repeatRows=1 if header else 0)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), font),  # the table's default is Helvetica, which the PDF would not embed
        ("GRID" if header else "BOX", (0, 0), (-1, -1), 0.5, _MUTED),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]))
    return table


def _facts(doc: ProtocolDocumentInput, labels: Labels, styles: _Styles) -> Table:
    def date(day: dt.date) -> str:
        return format_date(day, labels.date_pattern, locale=doc.language)

    time = format_time(doc.starts_at.time(), "HH:mm", locale=doc.language)
    day = date(doc.starts_at.date())
    physician = f"{doc.physician_name}, {doc.physician_specialty} ({labels.licence} {doc.physician_licence})"
    rows = [(labels.patient, f"{doc.patient_name}, {date(doc.birth_date)}"), (labels.physician, physician),
            (labels.consultation, f"{labels.kinds[doc.kind]} · {day} {time} · {doc.condition}")]
    return _grid([[Paragraph(_markup(a), styles.label), Paragraph(_markup(b), styles.value)] for a, b in rows],
                 [38 * mm, None], styles.body.fontName)


def _section(story: list[Flowable], title: str, text: str, styles: _Styles, labels: Labels) -> None:
    story.append(Paragraph(_markup(title), styles.heading))
    story.append(Paragraph(_markup(text) if text else _markup(labels.none), styles.body))


def _recommendations(doc: ProtocolDocumentInput, labels: Labels, styles: _Styles) -> list[Flowable]:
    advice = doc.content.recommendations
    lines = []
    if advice.in_person_visit:
        lines.append("• " + labels.in_person_visit)
    if advice.tests:
        lines.append("• " + labels.tests + (f": {advice.tests_detail}" if advice.tests_detail else ""))
    if advice.text:
        lines.append(advice.text)
    return [Paragraph(_markup(labels.recommendations), styles.heading),
            Paragraph(_markup("\n".join(lines) or labels.none), styles.body)]


def _repeat_sections(doc: ProtocolDocumentInput, labels: Labels, styles: _Styles) -> list[Flowable]:
    content, story = doc.content, []
    diagnosis = content.diagnosis
    story.append(Paragraph(_markup(labels.diagnosis), styles.heading))
    story.append(Paragraph(_markup(f"{diagnosis.icd10} — {diagnosis.text}" if diagnosis else labels.none),
                           styles.body))
    story.append(Paragraph(_markup(labels.prescriptions), styles.heading))
    if not content.prescriptions:
        story.append(Paragraph(_markup(labels.none), styles.body))
        return story
    header = [Paragraph(_markup(name), styles.label) for name in labels.prescription_columns]
    rows = [header] + [[Paragraph(_markup(value), styles.cell) for value in
                        (p.drug, p.dose, p.route, p.frequency, p.duration, p.notes)] for p in content.prescriptions]
    story.append(_grid(rows, [36 * mm, 22 * mm, 22 * mm, 26 * mm, 22 * mm, None], styles.body.fontName, header=True))
    return story


def _story(doc: ProtocolDocumentInput, labels: Labels, styles: _Styles) -> list[Flowable]:
    meta = labels.version.format(version=doc.version)
    if doc.amendment_reason:
        meta += " · " + labels.amends.format(previous=doc.version - 1, reason=doc.amendment_reason)
    story: list[Flowable] = [Paragraph(_markup(doc.clinic_name), styles.clinic),
                             Paragraph(_markup(labels.title), styles.title),
                             Paragraph(_markup(meta), styles.meta), Spacer(1, 2 * mm),
                             _facts(doc, labels, styles)]
    content = doc.content
    for title, text in ((labels.complaints, content.complaints), (labels.anamnesis, content.anamnesis),
                        (labels.reported_and_shown, content.reported_and_shown),
                        (labels.assessment, content.assessment)):
        _section(story, title, text, styles, labels)
    if doc.kind == "repeat":
        story += _repeat_sections(doc, labels, styles)
    story += _recommendations(doc, labels, styles)
    _section(story, labels.follow_up, content.follow_up, styles, labels)
    story.append(Paragraph(_markup(labels.closing.format(document_id=doc.document_id)), styles.closing))
    return story


def render_protocol_pdf(doc: ProtocolDocumentInput, *, font_path: Path = DEFAULT_FONT,
                        bold_font_path: Path | None = None) -> bytes:
    """The protocol as PDF bytes, identical for identical input, so its hash can be signed."""
    if doc.language not in LABELS:
        raise ValueError(f"unsupported protocol language {doc.language!r}")
    if bold_font_path is None:
        bold_font_path = DEFAULT_BOLD_FONT if font_path == DEFAULT_FONT else font_path
    regular, bold = register_font(font_path), register_font(bold_font_path)
    labels = LABELS[doc.language]
    buffer = io.BytesIO()
    template = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=_MARGIN, rightMargin=_MARGIN, topMargin=_MARGIN,
                                 bottomMargin=_MARGIN, title=labels.title, author=doc.clinic_name,
                                 subject=f"protocol v{doc.version}",  # never the patient: metadata is indexed
                                 creator="telemed", lang=doc.language, invariant=1, initialFontName=regular)

    def footer(page: int, pages: int) -> str:
        return labels.footer.format(document_id=doc.document_id, page=page, pages=pages)

    template.build(_story(doc, labels, _Styles(regular, bold)),
                   canvasmaker=functools.partial(NumberedCanvas, footer=footer, footer_font=regular, footer_y=9 * mm))
    return buffer.getvalue()
