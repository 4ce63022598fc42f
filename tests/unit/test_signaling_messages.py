"""The call's WebSocket messages: what is accepted, and what each refusal says (without echoing the input)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling import messages
from signaling.calls import clean_chat
from signaling.messages import BadMessage


def _parse(value: object) -> messages.ClientMessage:
    return messages.parse(json.dumps(value))


def test_signaling_messages_parse_every_client_type() -> None:
    consultation = uuid.uuid4()
    join = _parse({"type": "join", "consultation_id": str(consultation), "ticket": "t" * 43})
    assert isinstance(join, messages.Join)
    assert join.consultation_id == consultation
    assert isinstance(_parse({"type": "offer", "sdp": "v=0\r\n"}), messages.Offer)
    assert isinstance(_parse({"type": "answer", "sdp": "v=0\r\n"}), messages.Answer)
    ice = _parse({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
                                                 "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "abcd"}})
    assert isinstance(ice, messages.Ice)
    assert ice.candidate is not None
    assert ice.candidate.sdpMid == "0"
    end_of_candidates = _parse({"type": "ice", "candidate": None})
    assert isinstance(end_of_candidates, messages.Ice)
    assert end_of_candidates.candidate is None
    state = _parse({"type": "media_state", "muted": True, "camera": False})
    assert state == messages.MediaState(type="media_state", muted=True, camera=False)
    assert isinstance(_parse({"type": "chat", "text": "Здравствуйте, доктор"}), messages.Chat)
    assert isinstance(_parse({"type": "leave"}), messages.Leave)
    assert isinstance(_parse({"type": "end"}), messages.End)


@pytest.mark.parametrize(("raw", "code"), [
    ("{", "malformed_json"),
    ("", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    ("[]", "invalid_message"),
    ("null", "invalid_message"),
    ('"join"', "invalid_message"),
    ("{}", "unknown_type"),
    ('{"type": "shout"}', "unknown_type"),
    ('{"type": 5}', "unknown_type"),
    ('{"type": "chat"}', "invalid_message"),
    ('{"type": "chat", "text": ""}', "invalid_message"),
    ('{"type": "leave", "extra": 1}', "invalid_message"),
    ('{"type": "media_state", "muted": "maybe", "camera": true}', "invalid_message"),
    ('{"type": "media_state", "muted": "yes", "camera": 1}', "invalid_message"),  # strict: no coercion
    ('{"type": "ice", "candidate": {"candidate": "c", "sdpMLineIndex": "0"}}', "invalid_message"),
    ('{"type": "join", "consultation_id": "not-a-uuid", "ticket": "x"}', "invalid_message"),
    ('{"type": "ice", "candidate": {"candidate": "c", "sdpMLineIndex": -1}}', "invalid_message"),
])
def test_signaling_messages_refuse_with_a_code(raw: str | bytes, code: str) -> None:
    with pytest.raises(BadMessage) as refused:
        messages.parse(raw)
    assert refused.value.code == code


def test_signaling_messages_errors_name_fields_and_never_echo_the_input() -> None:
    secret = "<script>steal()</script>"
    with pytest.raises(BadMessage) as refused:
        messages.parse(json.dumps({"type": "media_state", "muted": secret, "camera": True}))
    assert refused.value.message == "invalid fields: muted"
    assert secret not in refused.value.message


def test_signaling_messages_limit_chat_length_and_ticket_size() -> None:
    assert isinstance(_parse({"type": "chat", "text": "я" * messages.MAX_CHAT_CHARS}), messages.Chat)
    with pytest.raises(BadMessage):
        _parse({"type": "chat", "text": "я" * (messages.MAX_CHAT_CHARS + 1)})
    with pytest.raises(BadMessage):
        _parse({"type": "join", "consultation_id": str(uuid.uuid4()), "ticket": "t" * 201})


@given(st.text(max_size=200))
def test_signaling_messages_parse_only_raises_bad_message(raw: str) -> None:
    code = None
    try:
        messages.parse(raw)
    except BadMessage as refused:  # anything else (a pydantic or JSON error leaking out) fails the test
        code = refused.code
    assert code in {None, "malformed_json", "unknown_type", "invalid_message"}


def test_signaling_events_serialise_to_json() -> None:
    participant = messages.ParticipantOut(participant_id="p1", role="patient", name="Пётр", state="connected",
                                          since=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), muted=False, camera=True)
    joined = messages.event("joined", participant_id="p2", participants=[participant], recording=True)
    assert json.loads(json.dumps(joined)) == {
        "type": "joined", "participant_id": "p2", "recording": True,
        "participants": [{"participant_id": "p1", "role": "patient", "name": "Пётр", "state": "connected",
                          "since": "2026-01-01T00:00:00Z", "muted": False, "camera": True}]}
    assert messages.error("rate_limited", "slow down") == {"type": "error", "code": "rate_limited",
                                                           "message": "slow down"}


@pytest.mark.parametrize(("text", "clean"), [
    ("<b>Doctor</b>, my <i>chest</i> hurts", "Doctor, my chest hurts"),
    ("<script>alert(1)</script>hello", "hello"),
    ('<img src=x onerror="alert(1)">', ""),
    ("blood pressure < 140 & pulse > 60", "blood pressure < 140 & pulse > 60"),
    ("  a\x00b\x1bc\n  ", "abc"),
    ("Здравствуйте!", "Здравствуйте!"),
])
def test_signaling_chat_is_cleaned_to_plain_text(text: str, clean: str) -> None:
    assert clean_chat(text) == clean
