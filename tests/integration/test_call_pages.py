"""The call page over HTTP: who gets it when, what it carries for its script, and the links that lead to it."""

from __future__ import annotations

import html
import json
import re
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from server.scheduling.models import ConsultationStatus
from tests.factories import register_patient
from tests.integration.test_pages import EN, RU, form_login
from tests.integration.test_signaling_call import admit, check_in, status_of
from tests.scheduling_helpers import booked_clinic
from web.call_pages import SCRIPT_TEXTS


async def _get(client: TestClient, path: str, headers: dict[str, str] = EN) -> Any:
    return await client.get(path, headers=headers, allow_redirects=False)


async def _sign_in(client: TestClient, email: str) -> None:
    client.session.cookie_jar.clear()
    assert (await form_login(client, email)).status == 303


def _texts(page: str) -> dict[str, str]:
    found = re.search(r'<script type="application/json" data-call-texts>(.*?)</script>', page, re.S)
    assert found is not None
    return dict(json.loads(found.group(1)))


def _attribute(page: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', page)
    assert found is not None, name
    return html.unescape(found.group(1))


async def test_call_page_patient_waits_until_let_in_then_gets_the_call(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    await _sign_in(client, clinic["patient"].email)
    call = f"/my/consultations/{consultation}/call"

    before = await _get(client, call)
    assert before.status == 302
    assert before.headers["Location"] == f"/my/consultations/{consultation}/waiting-room"
    await check_in(clinic)
    assert (await _get(client, call)).headers["Location"].endswith("/waiting-room")  # waiting, not let in
    await admit(clinic)

    waiting_room = await (await _get(client, f"/my/consultations/{consultation}/waiting-room")).text()
    assert f'href="{call}"' in waiting_room  # the admitted state leads to the call
    consultation_page = await (await _get(client, f"/my/consultations/{consultation}")).text()
    assert f'href="{call}"' in consultation_page

    assert (await _get(client, "/lang/ru?next=/")).status in (302, 303)  # the page's language link
    response = await _get(client, call, RU)
    assert response.status == 200
    page = await response.text()
    assert _attribute(page, "data-consultation-id") == consultation
    assert _attribute(page, "data-role") == "patient"
    assert _attribute(page, "data-join-url") == f"/api/v1/consultations/{consultation}/join"
    assert _attribute(page, "data-csrf") == client.session.cookie_jar.filter_cookies(
        client.make_url("/"))["telemed_csrf"].value  # what the join request must echo
    assert "playsinline" in page
    assert 'aria-live="polite"' in page
    texts = _texts(page)
    assert set(texts) == set(SCRIPT_TEXTS)
    untranslated = [key for key, text in texts.items() if text == SCRIPT_TEXTS[key] and key != "chat_from"]
    assert untranslated == []  # the Russian page's script speaks Russian throughout
    assert texts["physician_left"] == "Врач вышел из видеосвязи."
    assert 'data-testid="leave"' in page
    assert 'data-testid="end"' not in page  # only the physician ends the consultation


async def test_call_page_physician_and_strangers(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url, patient_name="Пётр Звонков")
    client, consultation = clinic["client"], clinic["consultation"]
    await check_in(clinic)

    await _sign_in(client, clinic["doctor"].email)
    staff_page = await (await _get(client, f"/clinic/consultations/{consultation}")).text()
    assert f'href="/clinic/consultations/{consultation}/call"' in staff_page
    response = await _get(client, f"/clinic/consultations/{consultation}/call")
    assert response.status == 200
    page = await response.text()
    assert _attribute(page, "data-role") == "physician"
    assert "Видеоконсультация: Пётр Звонков" in page  # the physician account speaks Russian
    assert 'data-testid="end"' in page
    assert 'data-testid="primary-note"' in page  # a primary consultation: no diagnosis, no prescription
    assert (await _get(client, f"/my/consultations/{consultation}/call")).status == 404  # the patients' path

    stranger = await register_patient(client, full_name="Чужой Пациент", signed_in=False)
    await _sign_in(client, stranger.email)
    missing = str(uuid.uuid4())
    unknown = await (await _get(client, f"/my/consultations/{missing}/call")).text()
    for path in (f"/my/consultations/{consultation}/call", f"/clinic/consultations/{consultation}/call",
                 "/my/consultations/not-an-id/call"):
        refused = await _get(client, path)
        assert refused.status == 404, path
        if path.startswith("/my/consultations/" + consultation):  # exactly the page of a consultation that is not
            assert (await refused.text()).replace(consultation, missing) == unknown

    await _sign_in(client, clinic["doctor"].email)
    finished = await client.post(f"/api/v1/consultations/{consultation}/admit", headers=clinic["doctor"].auth)
    assert finished.status == 200
    ended = await client.post(f"/api/v1/consultations/{consultation}/finish", headers=clinic["doctor"].auth)
    assert ended.status == 200, await ended.text()
    assert await status_of(client, consultation) is ConsultationStatus.completed
    over = await _get(client, f"/clinic/consultations/{consultation}/call")
    assert over.status == 302
    assert over.headers["Location"] == f"/clinic/consultations/{consultation}"
