"""The clinic's default consent texts, shipped as data (`seed/<purpose>.<lang>.md`) for admins to adapt.

A text is the tiny format the consent PDF renders: the first line `# Title`, then the body, in which
paragraphs are separated by blank lines, a line starting with `## ` is a heading and lines starting with
`- ` are bullet items. Keeping the texts as files lets a lawyer review them without reading Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

PURPOSES = ("telemedicine_care", "recording", "personal_data")
LANGUAGES = ("ru", "en")


@dataclass(frozen=True)
class ConsentText:
    """A consent template's wording in one language: what the admin edits and the PDF prints."""

    title: str
    body: str


def parse_text(markdown: str) -> ConsentText:
    """Split a seed file into title and body, so the title can be stored and shown apart from the text."""
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines or not lines[0].startswith("# ") or not lines[0][2:].strip():
        raise ValueError("a consent text starts with a '# Title' line")
    body = "\n".join(line.rstrip() for line in lines[1:]).strip("\n")
    if not body.strip():
        raise ValueError("a consent text needs a body after its title")
    return ConsentText(title=lines[0][2:].strip(), body=body)


@cache
def _load(purpose: str, language: str) -> ConsentText:
    file = resources.files("consent") / "seed" / f"{purpose}.{language}.md"
    try:
        return parse_text(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from exc


def default_texts(purpose: str) -> dict[str, ConsentText]:
    """The shipped wording of one purpose in every language, the starting point of a clinic's first template."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown consent purpose {purpose!r}; expected one of {', '.join(PURPOSES)}")
    return {language: _load(purpose, language) for language in LANGUAGES}
