"""The default consent texts: all of them ship, in both languages, and say what the law and the practice require."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from consent.pdf import body_blocks
from consent.texts import LANGUAGES, PURPOSES, ConsentText, default_texts, parse_text

# Numbers a default text may contain: the emergency numbers, the laws' numbers and dates, the age of consent.
ALLOWED_NUMBERS = {"103", "112", "323", "152", "21", "2011", "27", "2006", "15"}

REQUIRED = {
    ("telemedicine_care", "ru"): [
        "103", "112", "323-ФЗ", "На первичной телемедицинской консультации диагноз не устанавливается",
        "лечение не назначается", "скорректировать ранее назначенное лечение", "очный приём",
        "не является экстренной", "Обрыв связи", "повторно свяжется", "достоверные и полные сведения",
        "разговор не слышат посторонние", "от своего имени", "отозвать настоящее согласие в любой момент",
        "не лишает меня права на медицинскую помощь при очном обращении",
    ],
    ("telemedicine_care", "en"): [
        "103", "112", "323-FZ", "A primary teleconsultation does not establish a diagnosis", "prescribe treatment",
        "adjust the treatment prescribed earlier", "in-person visit", "not emergency", "connection dropping",
        "contact me again", "true and complete information", "cannot overhear", "as myself",
        "withdraw this consent at any time", "does not take away my right to medical care at an in-person visit",
    ],
    ("recording", "ru"): [
        "аудио- и видеозапись", "зашифрованном виде", "медицинской документации", "Лечащий врач", "Врачи-эксперты",
        "выборочно", "предоставлено законом", "отозвать настоящее согласие в любой момент",
        "запись текущей консультации прекращается", "последующие консультации не записываются",
        "консультацию без записи или очный приём", "ни для каких иных целей",
    ],
    ("recording", "en"): [
        "audio and video recordings", "encrypted", "for the period medical records are kept under the law",
        "The treating physician", "expert physicians", "a sample", "entitled to do so by law",
        "withdraw this consent at any time", "the recording of the ongoing consultation stops",
        "later consultations are not recorded", "a consultation without recording or an in-person visit",
        "not used for any other purpose",
    ],
    ("personal_data", "ru"): [
        "152-ФЗ", "специальной категории", "клиника, наименование которой указано в заголовке",
        "Оказание мне медицинской помощи", "Ведение моей медицинской документации", "Контроль качества",
        "уведомлений", "Дата рождения", "Контактные данные", "Жалобы", "предварительного опроса",
        "только при наличии моего отдельного согласия", "Сбор, запись, систематизация, хранение",
        "уточнение", "использование", "передача", "блокирование, удаление, уничтожение",
        "до достижения целей обработки или до его отзыва", "сроков, установленных законодательством",
        "в личном кабинете пациента двумя нажатиями", "письменным заявлением",
    ],
    ("personal_data", "en"): [
        "152-FZ", "special category", "the clinic whose name is given in the header",
        "Providing me with medical care", "Keeping my medical record", "quality", "notifications",
        "Date of birth", "Contact details", "Complaints", "screening questionnaire",
        "only if I have given separate consent", "Collection, recording, systematisation, storage",
        "clarification", "use", "transfer", "blocking, deletion and destruction",
        "until the purposes of processing are achieved or until it is withdrawn", "periods established by law",
        "in my patient account, in two clicks", "written application",
    ],
}


def _cyrillic_share(text: str) -> float:
    letters = [char for char in text if char.isalpha()]
    return sum("\u0400" <= char <= "\u04ff" for char in letters) / len(letters)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_default_texts_exist_in_every_language(purpose: str) -> None:
    texts = default_texts(purpose)
    assert set(texts) == set(LANGUAGES)
    for text in texts.values():
        assert text.title.strip()
        assert len(text.body) > 500


@pytest.mark.parametrize("purpose", PURPOSES)
def test_default_texts_russian_is_cyrillic_and_english_is_not(purpose: str) -> None:
    texts = default_texts(purpose)
    assert _cyrillic_share(texts["ru"].title) == 1.0
    assert _cyrillic_share(texts["ru"].body) > 0.98
    assert _cyrillic_share(texts["en"].title + texts["en"].body) == 0.0


@pytest.mark.parametrize(("purpose", "language"), sorted(REQUIRED))
def test_default_texts_say_what_the_purpose_requires(purpose: str, language: str) -> None:
    text = default_texts(purpose)[language]
    missing = [phrase for phrase in REQUIRED[(purpose, language)] if phrase not in text.body]
    assert not missing


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_default_texts_have_no_placeholders_or_invented_numbers(purpose: str, language: str) -> None:
    text = default_texts(purpose)[language]
    whole = f"{text.title}\n{text.body}"
    for marker in ("__", "[", "]", "{", "}", "<", ">", "...", "…", "TODO", "XXX"):
        assert marker not in whole
    assert set(re.findall(r"\d+", whole)) <= ALLOWED_NUMBERS


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_default_texts_use_the_body_format(purpose: str, language: str) -> None:
    text = default_texts(purpose)[language]
    kinds = {block.kind for block in body_blocks(text.body)}
    assert {"heading", "bullet", "paragraph"} <= kinds
    assert not any(line.startswith(("# ", "* ", "  ")) for line in text.body.splitlines())


def test_seed_folder_holds_only_known_texts() -> None:
    names = {entry.name for entry in (resources.files("consent") / "seed").iterdir()}
    assert names == {f"{purpose}.{language}.md" for purpose in PURPOSES for language in LANGUAGES}


def test_parse_text_splits_title_and_body() -> None:
    text = parse_text("\r\n# Согласие \r\n\r\nПервый абзац.\r\n\r\n- пункт\r\n")
    assert text == ConsentText(title="Согласие", body="Первый абзац.\n\n- пункт")


@pytest.mark.parametrize("markdown", ["", "Согласие\n\nтекст", "#Согласие\n\nтекст", "# \n\nтекст", "# Согласие\n\n"])
def test_parse_text_rejects_text_without_title_or_body(markdown: str) -> None:
    with pytest.raises(ValueError, match="consent text"):
        parse_text(markdown)


def test_default_texts_rejects_unknown_purpose() -> None:
    with pytest.raises(ValueError, match="unknown consent purpose"):
        default_texts("marketing")
