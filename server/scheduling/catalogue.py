"""The clinic's default catalogue, shipped as data: conditions allowed for teleconsultation and their
screening questionnaires (`seed/conditions.json`, `seed/questionnaires/<code>.json`).

Each file is validated with the published formats of `screening`; bad data fails loudly, naming the file.
"""

from __future__ import annotations

import json
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.scheduling.screening import ConditionEntry, QuestionnaireDefinition


class SeedError(ValueError):
    """A seed file that cannot be read or does not fit its format; the message names the file."""


def _seed_folder(folder: Traversable | Path | None) -> Traversable | Path:
    return folder if folder is not None else resources.files("server.scheduling") / "seed"


def _read_json(file: Traversable | Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SeedError(f"{file}: not readable JSON: {exc}") from exc


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
                     for error in exc.errors())


def load_conditions(folder: Traversable | Path | None = None) -> list[ConditionEntry]:
    """The default conditions catalogue, validated, so a broken seed stops start-up instead of a booking."""
    file = _seed_folder(folder) / "conditions.json"
    data = _read_json(file)
    if not isinstance(data, list):
        raise SeedError(f"{file}: expected a JSON list of conditions")
    entries: list[ConditionEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(data):
        try:
            entry = ConditionEntry.model_validate(item)
        except ValidationError as exc:
            code = item.get("code") if isinstance(item, dict) else None
            raise SeedError(f"{file}: condition #{index} ({code or 'no code'}) is invalid: {_problems(exc)}") from exc
        if entry.code in seen:
            raise SeedError(f"{file}: condition code {entry.code} appears twice")
        seen.add(entry.code)
        entries.append(entry)
    return entries


def load_questionnaires(folder: Traversable | Path | None = None) -> dict[str, QuestionnaireDefinition]:
    """The default screening questionnaires by code, validated, so every rule names a real question."""
    directory = _seed_folder(folder) / "questionnaires"
    try:
        files = sorted((f for f in directory.iterdir() if f.is_file() and f.name.endswith(".json")),
                       key=lambda f: f.name)
    except OSError as exc:
        raise SeedError(f"{directory}: cannot list questionnaire files: {exc}") from exc
    found: dict[str, QuestionnaireDefinition] = {}
    for file in files:
        try:
            definition = QuestionnaireDefinition.model_validate(_read_json(file))
        except ValidationError as exc:
            raise SeedError(f"{file}: invalid questionnaire: {_problems(exc)}") from exc
        if f"{definition.code}.json" != file.name:
            raise SeedError(f"{file}: holds questionnaire {definition.code}; the file must be {definition.code}.json")
        found[definition.code] = definition
    if not found:
        raise SeedError(f"{directory}: no questionnaire files")
    return found
