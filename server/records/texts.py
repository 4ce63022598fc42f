"""The protocol PDF's fixed words, in the clinic's two languages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Labels:
    title: str
    version: str
    amends: str
    patient: str
    physician: str
    licence: str
    consultation: str
    kinds: dict[str, str]
    complaints: str
    anamnesis: str
    reported_and_shown: str
    assessment: str
    diagnosis: str
    prescriptions: str
    prescription_columns: tuple[str, ...]
    recommendations: str
    in_person_visit: str
    tests: str
    follow_up: str
    none: str
    closing: str
    footer: str
    date_pattern: str


LABELS = {
    "ru": Labels(
        title="Протокол телемедицинской консультации",
        version="Версия {version}",
        amends="исправляет версию {previous}: {reason}",
        patient="Пациент",
        physician="Врач",
        licence="лицензия",
        consultation="Консультация",
        kinds={"primary": "первичная", "repeat": "повторная"},
        complaints="Жалобы",
        anamnesis="Анамнез",
        reported_and_shown="Со слов пациента и по представленным данным",
        assessment="Заключение",
        diagnosis="Диагноз (МКБ-10)",
        prescriptions="Назначения",
        prescription_columns=("Препарат", "Доза", "Путь", "Кратность", "Длительность", "Примечания"),
        recommendations="Рекомендации",
        in_person_visit="Очный приём в клинике",
        tests="Обследования",
        follow_up="Дальнейшее наблюдение",
        none="—",
        closing=("Документ подписан врачом в электронной форме. Подпись, сведения о её виде и электронная печать "
                 "клиники хранятся в информационной системе клиники под идентификатором документа {document_id}."),
        footer="Документ {document_id} · страница {page} из {pages}",
        date_pattern="dd.MM.yyyy",
    ),
    "en": Labels(
        title="Teleconsultation protocol",
        version="Version {version}",
        amends="amends version {previous}: {reason}",
        patient="Patient",
        physician="Physician",
        licence="licence",
        consultation="Consultation",
        kinds={"primary": "primary", "repeat": "repeat"},
        complaints="Complaints",
        anamnesis="History",
        reported_and_shown="Reported and shown by the patient",
        assessment="Assessment",
        diagnosis="Diagnosis (ICD-10)",
        prescriptions="Prescriptions",
        prescription_columns=("Drug", "Dose", "Route", "Frequency", "Duration", "Notes"),
        recommendations="Recommendations",
        in_person_visit="In-person visit at the clinic",
        tests="Tests",
        follow_up="Follow-up",
        none="—",
        closing=("Signed electronically by the physician; the signature, its level and the clinic's seal are kept "
                 "in the clinic's records under document id {document_id}."),
        footer="Document {document_id} · page {page} of {pages}",
        date_pattern="d MMMM yyyy",
    ),
}
