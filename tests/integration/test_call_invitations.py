"""A third participant: the physician's one-time link, the guest's form and pass, the guest's ticket and seat.

Each "browser" of a guest is a client session of its own (its own cookies), as two people's browsers are.
Media is not exercised: the guest's seat, ticket, socket `joined` event and chat are, with the physician in
the room.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from server import keys
from server.audit.models import AuditEntry
from server.auth.models import Role
from server.db.engine import transaction
from signaling.models import CallChatMessage, CallInvitation, GuestRelation, JoinTicket
from tests.factories import create_staff
from tests.integration.test_pages import EN
from tests.integration.test_signaling_call import (
    admit,
    check_in,
    join,
    keep_ice_on_loopback,
    live_clinic,
    present,
)
from tests.scheduling_helpers import booked_clinic

pytestmark = pytest.mark.slow

GUEST = {"name": "Анна Переводчица", "relation": "interpreter", "recorded": "on"}


@asynccontextmanager
async def browser(client: TestClient) -> AsyncIterator[aiohttp.ClientSession]:
    """Another browser: its own cookie jar, speaking to the same server."""
    async with aiohttp.ClientSession(base_url=str(client.make_url("/")), headers=EN,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def cookie_of(session: aiohttp.ClientSession, name: str) -> str | None:
    return next((morsel.value for morsel in session.cookie_jar if morsel.key == name), None)


def form_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def invite(clinic: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The physician makes a link; its path on this server, and the answer."""
    response = await clinic["client"].post(f"/api/v1/consultations/{clinic['consultation']}/invitations",
                                           headers=clinic["doctor"].auth)
    assert response.status == 201, await response.text()
    body = await response.json()
    public = clinic["client"].app[keys.settings].public_url.rstrip("/")
    assert body["url"].startswith(f"{public}/call/guest/")
    return body["url"].removeprefix(public), body


async def open_form(guest: aiohttp.ClientSession, path: str) -> str:
    response = await guest.get(path)
    assert response.status == 200, await response.text()
    page = await response.text()
    assert 'data-testid="guest-form"' in page
    return form_token(page)


async def redeem(guest: aiohttp.ClientSession, path: str, **fields: str) -> aiohttp.ClientResponse:
    token = await open_form(guest, path)
    return await guest.post(path, data={"csrf_token": token, **GUEST, **fields}, allow_redirects=False)


async def guest_ticket(guest: aiohttp.ClientSession, path: str) -> aiohttp.ClientResponse:
    return await guest.post(f"{path}/join", headers={"X-CSRF-Token": cookie_of(guest, "telemed_csrf") or ""})


async def test_call_invitations_guest_joins_the_call_and_chats(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    path, made = await invite(clinic)
    async with browser(client) as guest:
        redeemed = await redeem(guest, path)
        assert redeemed.status == 303
        assert redeemed.headers["Location"] == path
        cookie = SimpleCookie(redeemed.headers["Set-Cookie"])["telemed_guest"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"  # reopened from a webmail link, it is still sent
        assert cookie["path"] == path  # this link's only: another invitation's pass does not replace it
        assert int(cookie["max-age"]) > 0

        page = await (await guest.get(path)).text()
        assert 'data-role="guest"' in page
        assert f'data-join-url="{path}/join"' in page
        assert html.escape("Staff physician") in page  # the physician's name: the person the guest came to see

        response = await guest_ticket(guest, path)
        assert response.status == 201, await response.text()
        answer = await response.json()
        assert answer["role"] == "guest"
        assert answer["consultation_id"] == consultation
        assert answer["ws_url"].endswith("/api/v1/signaling")

        doctor = await join(client, clinic["doctor"], consultation)
        socket = await present(client, consultation, answer["ticket"])
        joined = await socket.expect("joined")
        assert joined["role"] == "guest"
        arrived = await doctor.expect("participant_joined")
        assert arrived["participant"]["role"] == "guest"
        assert arrived["participant"]["name"] == GUEST["name"]

        await socket.send({"type": "chat", "text": "Перевожу: пациент говорит, что кашель сухой"})
        said = await doctor.expect("chat")
        assert said["role"] == "guest"
        assert said["name"] == GUEST["name"]
        await socket.close()
        await doctor.close()

    async with client.app[keys.read_sessions]() as session:
        message = (await session.scalars(select(CallChatMessage))).one()
        invitation = (await session.scalars(select(CallInvitation))).one()
        ticket = (await session.scalars(select(JoinTicket).where(JoinTicket.role == "guest"))).one()
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.action.like("call.%")))).all()
    assert str(invitation.id) == made["id"]
    assert message.sender_invitation_id == invitation.id
    assert message.sender_user_id is None
    assert ticket.invitation_id == invitation.id
    assert ticket.user_id is None
    assert invitation.guest_name == GUEST["name"]
    assert invitation.guest_relation is GuestRelation.interpreter
    actions = {entry.action for entry in entries}
    assert {"call.invitation_created", "call.invitation_redeemed", "call.join_ticket", "call.joined"} <= actions
    joined_entry = next(e for e in entries if e.action == "call.joined" and e.actor_role == "guest")
    assert joined_entry.detail is not None
    assert joined_entry.detail["relation"] == "interpreter"
    redeemed_entry = next(e for e in entries if e.action == "call.invitation_redeemed")
    assert redeemed_entry.detail is not None
    assert redeemed_entry.detail["recording_acknowledged"] is True  # what the guest agreed to is on record
    assert all(GUEST["name"] not in str(entry.detail) for entry in entries)  # the log never names the guest


async def test_call_invitations_link_works_once_in_one_browser(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client = clinic["client"]
    path, _ = await invite(clinic)
    async with browser(client) as first, browser(client) as second:
        second_token = await open_form(second, path)
        assert (await redeem(first, path)).status == 303
        again = await first.post(path, data={"csrf_token": cookie_of(first, "telemed_csrf") or "", **GUEST},
                                 allow_redirects=False)
        assert again.status == 303  # the same browser sending the form twice is simply in
        late = await second.post(path, data={"csrf_token": second_token, **GUEST, "name": "Someone Else"},
                                 allow_redirects=False)
        assert late.status == 410
        assert "already been used" in await late.text()
        opened = await second.get(path)
        assert opened.status == 410
        assert 'data-testid="call"' not in await opened.text()
        assert (await guest_ticket(second, path)).status == 404  # without the first browser's pass
        assert (await guest_ticket(first, path)).status == 201
    async with client.app[keys.read_sessions]() as session:
        invitation = (await session.scalars(select(CallInvitation))).one()
    assert invitation.guest_name == GUEST["name"]


async def test_call_invitations_two_browsers_at_once_exactly_one_wins(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    path, _ = await invite(clinic)
    async with browser(clinic["client"]) as first, browser(clinic["client"]) as second:
        tokens = [await open_form(first, path), await open_form(second, path)]
        answers = await asyncio.gather(*(
            guest.post(path, data={"csrf_token": token, **GUEST, "name": name}, allow_redirects=False)
            for guest, token, name in ((first, tokens[0], "Первый"), (second, tokens[1], "Второй"))))
        assert sorted(answer.status for answer in answers) == [303, 410]
        winner = first if answers[0].status == 303 else second
        loser = second if winner is first else first
        assert (await guest_ticket(winner, path)).status == 201
        assert (await guest_ticket(loser, path)).status == 404


async def test_call_invitations_revoked_and_expired_links_are_refused(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation, doctor = clinic["client"], clinic["consultation"], clinic["doctor"]
    used, used_made = await invite(clinic)
    unused, unused_made = await invite(clinic)
    async with browser(client) as guest:
        assert (await redeem(guest, used)).status == 303
        ticket = (await (await guest_ticket(guest, used)).json())["ticket"]  # taken before the revocation
        base = f"/api/v1/consultations/{consultation}/invitations"
        for made in (used_made, unused_made):
            revoked = await client.post(f"{base}/{made['id']}/revoke", headers=doctor.auth)
            assert revoked.status == 200, await revoked.text()
            assert (await revoked.json())["status"] == "revoked"
        page = await guest.get(used)
        assert page.status == 410
        assert 'data-kind="revoked"' in await page.text()
        refused = await guest_ticket(guest, used)
        assert refused.status == 410
        assert (await refused.json())["code"] == "invitation_gone"
        socket = await present(client, consultation, ticket)
        error = await socket.expect("error")
        assert error["code"] == "invitation_gone"
        assert await socket.closed() == 4403
    async with browser(client) as stranger:
        assert (await stranger.get(unused)).status == 410

    late, _ = await invite(clinic)
    async with transaction(client.app[keys.sessions]) as session:
        await session.execute(update(CallInvitation).where(CallInvitation.revoked_at.is_(None))
                              .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    async with browser(client) as guest:
        expired = await guest.get(late)
        assert expired.status == 410
        assert 'data-kind="over"' in await expired.text()
        listing = await (await client.get(base, headers=doctor.auth)).json()
        assert sorted(item["status"] for item in listing["items"]) == ["expired", "revoked", "revoked"]
        assert all("url" not in item and "token" not in str(item) for item in listing["items"])
        names = [item["guest_name"] for item in listing["items"] if item["guest_name"]]
        assert names == [GUEST["name"]]


async def test_call_invitations_only_the_consultations_physician(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    other = await create_staff(client, Role.physician)
    admin = await create_staff(client, Role.admin, with_totp=True)
    _, made = await invite(clinic)
    base = f"/api/v1/consultations/{consultation}/invitations"
    for account in (clinic["patient"], other):
        for method, path in (("POST", base), ("GET", base), ("POST", f"{base}/{made['id']}/revoke")):
            response = await client.request(method, path, headers=account.auth)
            assert response.status == 404, (account.role, method, path)
    assert (await client.post(base, headers=admin.auth)).status == 403  # not a participant of any call
    missing = await client.post(f"{base}/{uuid.uuid4()}/revoke", headers=clinic["doctor"].auth)
    assert missing.status == 404
    async with browser(client) as guest:
        assert (await guest.get("/call/guest/" + "x" * 43)).status == 404
        assert (await guest.post("/call/guest/short/join")).status == 403  # no CSRF token: refused before all


async def test_call_invitations_limits_and_a_consultation_that_is_over(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation, doctor = clinic["client"], clinic["consultation"], clinic["doctor"]
    made = [(await invite(clinic))[1] for _ in range(3)]
    base = f"/api/v1/consultations/{consultation}/invitations"
    fourth = await client.post(base, headers=doctor.auth)
    assert fourth.status == 409
    assert (await fourth.json())["code"] == "too_many_invitations"
    assert (await client.post(f"{base}/{made[0]['id']}/revoke", headers=doctor.auth)).status == 200
    assert (await client.post(base, headers=doctor.auth)).status == 201
    finished = await client.post(f"/api/v1/consultations/{consultation}/finish", headers=doctor.auth)
    assert finished.status == 200, await finished.text()
    over = await client.post(base, headers=doctor.auth)
    assert over.status == 409
    assert (await over.json())["code"] == "consultation_over"


async def test_call_invitations_form_checks_csrf_and_fields(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    path, _ = await invite(clinic)
    async with browser(clinic["client"]) as guest:
        token = await open_form(guest, path)
        assert cookie_of(guest, "telemed_csrf") == token  # an anonymous visitor gets a CSRF cookie with the form
        stale = await guest.post(path, data={"csrf_token": "stale", **GUEST}, allow_redirects=False)
        assert stale.status == 403
        for wrong in ({"recorded": ""}, {"relation": "boss"}, {"name": "   "}, {"name": "a\x00b"}):
            refused = await guest.post(path, data={"csrf_token": token, **GUEST, **wrong}, allow_redirects=False)
            assert refused.status == 422, wrong
            assert 'data-testid="guest-error"' in await refused.text()
        assert (await redeem(guest, path)).status == 303
        forged = await guest.post(f"{path}/join", headers={"X-CSRF-Token": "forged"})
        assert forged.status == 403
        assert (await forged.json())["code"] == "csrf_failed"
    async with clinic["client"].app[keys.read_sessions]() as session:
        invitation = (await session.scalars(select(CallInvitation))).one()
    assert invitation.guest_name == GUEST["name"]  # the refused forms changed nothing


async def test_call_invitations_guest_waits_for_admission(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await booked_clinic(aiohttp_client, tmp_path, database_url)  # the patient is not let in yet
    path, _ = await invite(clinic)
    async with browser(clinic["client"]) as guest:
        assert (await redeem(guest, path)).status == 303
        early = await guest_ticket(guest, path)
        assert early.status == 409
        assert (await early.json())["code"] == "call_not_open"
        await check_in(clinic)
        waiting = await guest_ticket(guest, path)
        assert waiting.status == 409
        assert (await waiting.json())["code"] == "not_admitted"
        await admit(clinic)
        assert (await guest_ticket(guest, path)).status == 201


async def test_call_invitations_staff_page_invites_lists_and_revokes(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    from tests.integration.test_call_pages import _sign_in

    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    await _sign_in(client, clinic["doctor"].email)
    page_path = f"/clinic/consultations/{consultation}"
    page = await (await client.get(page_path, headers=EN)).text()
    assert 'data-testid="invite"' in page
    made = await client.post(f"{page_path}/invitations", data={"csrf_token": form_token(page)}, headers=EN,
                             allow_redirects=False)
    assert made.status == 200
    shown = await made.text()
    link = re.search(r'value="([^"]+)" data-testid="invitation-link"', shown)
    assert link is not None
    url = html.unescape(link.group(1))
    assert "/call/guest/" in url
    public = client.app[keys.settings].public_url.rstrip("/")
    async with browser(client) as guest:
        assert (await redeem(guest, url.removeprefix(public), relation="family")).status == 303
    listed = await (await client.get(page_path, headers=EN)).text()
    assert url not in listed  # shown once only
    assert GUEST["name"] in listed
    assert 'data-status="redeemed"' in listed
    assert "Член семьи" in listed  # the physician's account speaks Russian
    invitation_id = re.search(r'data-testid="invitation-row" data-id="([^"]+)"', listed)
    assert invitation_id is not None
    revoked = await client.post(f"{page_path}/invitations/{invitation_id.group(1)}/revoke",
                                data={"csrf_token": form_token(listed)}, headers=EN, allow_redirects=False)
    assert revoked.status == 303
    assert 'data-status="revoked"' in await (await client.get(page_path, headers=EN)).text()


async def test_call_invitations_pass_cookie_is_secure_behind_tls(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url, trust_forwarded_headers=True)
    path, _ = await invite(clinic)
    async with browser(clinic["client"]) as guest:
        token = await open_form(guest, path)
        redeemed = await guest.post(path, data={"csrf_token": token, **GUEST}, allow_redirects=False,
                                    headers={"X-Forwarded-Proto": "https"})
        assert redeemed.status == 303
        assert SimpleCookie(redeemed.headers["Set-Cookie"])["telemed_guest"]["secure"]


async def test_call_invitations_a_ticket_or_message_names_exactly_one_participant(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    _, made = await invite(clinic)
    consultation, now = uuid.UUID(clinic["consultation"]), dt.datetime.now(dt.UTC)
    both = {"user_id": uuid.UUID(clinic["doctor"].user_id), "invitation_id": uuid.UUID(made["id"])}
    for wrong in ({}, both):
        with pytest.raises(IntegrityError):
            async with transaction(clinic["client"].app[keys.sessions]) as session:
                session.add(JoinTicket(token_sha256=uuid.uuid4().hex, consultation_id=consultation, role="guest",
                                       expires_at=now, **wrong))
    with pytest.raises(IntegrityError):
        async with transaction(clinic["client"].app[keys.sessions]) as session:
            session.add(CallChatMessage(consultation_id=consultation, sender_role="guest", text="—", sent_at=now))


async def test_call_invitations_a_second_guest_waits_until_the_first_has_left(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    (first_path, _), (second_path, _) = await invite(clinic), await invite(clinic)
    async with browser(client) as first, browser(client) as second:
        assert (await redeem(first, first_path)).status == 303
        assert (await redeem(second, second_path, name="Second Relative", relation="family")).status == 303
        tickets = [await (await guest_ticket(guest, path)).json() for guest, path in
                   ((first, first_path), (second, second_path), (second, second_path))]
        interpreter = await present(client, consultation, tickets[0]["ticket"])
        await interpreter.expect("joined")

        relative = await present(client, consultation, tickets[1]["ticket"])
        assert await relative.closed() == 4403  # a call holds one guest at a time
        assert [event["code"] for event in relative.of("error")] == ["call_full"]
        async with client.app[keys.read_sessions]() as session:
            refusal = (await session.scalars(select(AuditEntry).where(
                AuditEntry.action == "call.join_refused"))).one()  # the log never shows a join that was not
        assert refusal.detail == {"role": "guest", "code": "call_full"}
        assert refusal.actor_role == "guest"
        assert refusal.actor_user_id is None

        await interpreter.send({"type": "leave"})
        assert await interpreter.closed() == 1000
        again = await present(client, consultation, tickets[2]["ticket"])
        joined = await again.expect("joined")
        assert joined["role"] == "guest"
        await again.close()


async def test_call_invitations_revoking_removes_the_guest_from_the_call(
        aiohttp_client: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_ice_on_loopback(monkeypatch)
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    client, consultation = clinic["client"], clinic["consultation"]
    path, made = await invite(clinic)
    async with browser(client) as guest:
        assert (await redeem(guest, path)).status == 303
        ticket = (await (await guest_ticket(guest, path)).json())["ticket"]
        doctor = await join(client, clinic["doctor"], consultation)
        socket = await present(client, consultation, ticket)
        await socket.expect("joined")
        arrived = await doctor.expect("participant_joined")

        revoked = await client.post(f"/api/v1/consultations/{consultation}/invitations/{made['id']}/revoke",
                                    headers=clinic["doctor"].auth)
        assert revoked.status == 200, await revoked.text()
        assert await socket.closed() == 4403
        assert [event["code"] for event in socket.of("error")] == ["invitation_gone"]
        left = await doctor.expect("participant_left")
        assert left == {"type": "participant_left", "participant_id": arrived["participant"]["participant_id"],
                        "reason": "removed"}
        room = client.app[keys.calls].room(uuid.UUID(consultation))
        assert room is not None
        assert [p.seat.role.value for p in room.participants()] == ["physician"]  # the call goes on
        assert (await guest_ticket(guest, path)).status == 410
        await doctor.close()


async def test_call_invitations_one_browser_keeps_the_passes_of_two_links(
        aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    clinic = await live_clinic(aiohttp_client, tmp_path, database_url)
    (first, _), (second, _) = await invite(clinic), await invite(clinic)
    async with browser(clinic["client"]) as guest:  # an interpreter invited twice
        for path in (first, second):
            assert (await redeem(guest, path)).status == 303
        for path in (first, second):
            response = await guest_ticket(guest, path)
            assert response.status == 201, await response.text()
