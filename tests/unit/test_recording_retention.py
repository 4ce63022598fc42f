"""The retention rule: which recordings may be crypto-erased, at the boundary and around it."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from media.recording.models import Recording, RecordingState
from media.recording.retention import expired, retained_since
from server.keyring import KeyConfigurationError, load_key_material, master_key_id
from server.settings import Settings

NOW = dt.datetime(2031, 6, 1, 12, 0, tzinfo=dt.UTC)
DAYS = 1825


def _recording(*, state: RecordingState = RecordingState.complete, age: dt.timedelta | None = None,
               finalised: bool = True, hold: bool = False) -> Recording:
    at = NOW - (age if age is not None else dt.timedelta(days=DAYS + 1))
    return Recording(id=uuid.uuid4(), consultation_id=uuid.uuid4(), state=state, node="n", key_id="k",
                     wrapped_key=b"\0" * 40, started_at=at - dt.timedelta(minutes=30),
                     finalised_at=at if finalised else None, legal_hold=hold)


@pytest.mark.parametrize("state", [RecordingState.complete, RecordingState.partial, RecordingState.damaged])
def test_expired_final_states_past_retention_are_erased(state: RecordingState) -> None:
    assert expired(_recording(state=state), NOW, DAYS)


@pytest.mark.parametrize("state", [RecordingState.recording, RecordingState.stopped, RecordingState.erased])
def test_expired_never_for_recordings_being_written_finalised_or_erased(state: RecordingState) -> None:
    assert not expired(_recording(state=state, age=dt.timedelta(days=10 * DAYS)), NOW, DAYS)


def test_expired_never_for_a_recording_on_legal_hold() -> None:
    assert not expired(_recording(hold=True, age=dt.timedelta(days=10 * DAYS)), NOW, DAYS)


def test_expired_never_when_retention_is_zero() -> None:
    assert not expired(_recording(age=dt.timedelta(days=100 * 365)), NOW, 0)


def test_expired_boundary_exactly_the_retention_is_kept_a_moment_later_erased() -> None:
    assert not expired(_recording(age=dt.timedelta(days=DAYS)), NOW, DAYS)
    assert expired(_recording(age=dt.timedelta(days=DAYS, microseconds=1)), NOW, DAYS)
    assert not expired(_recording(age=dt.timedelta(days=DAYS - 1)), NOW, DAYS)


def test_expired_counts_from_finalisation_or_from_the_start_without_one() -> None:
    finalised_late = _recording(age=dt.timedelta(days=DAYS - 1))
    finalised_late.started_at = NOW - dt.timedelta(days=DAYS + 30)  # recovered and finalised long after the call
    assert retained_since(finalised_late) == finalised_late.finalised_at
    assert not expired(finalised_late, NOW, DAYS)
    never_finalised = _recording(state=RecordingState.damaged, finalised=False)
    assert retained_since(never_finalised) == never_finalised.started_at
    assert expired(never_finalised, NOW, DAYS)


@given(days=st.integers(min_value=1, max_value=40 * 365),
       age_seconds=st.integers(min_value=0, max_value=50 * 365 * 86_400))
def test_expired_is_exactly_older_than_the_retention(days: int, age_seconds: int) -> None:
    recording = _recording(age=dt.timedelta(seconds=age_seconds))
    assert expired(recording, NOW, days) == (age_seconds > days * 86_400)


def test_keyring_previous_master_keys_open_by_id_and_bad_ones_are_refused(tmp_path: Path) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    settings = Settings(_env_file=None, data_dir=tmp_path / "var",
                        master_key=base64.b64encode(new).decode(),
                        master_previous_keys=[base64.b64encode(k).decode() for k in (old, new)])
    material = load_key_material(settings)
    assert material.master_key_id == master_key_id(new)
    assert material.previous_master_keys == {master_key_id(old): old}  # the current one listed too is ignored
    assert material.master_key_for(master_key_id(old)) == old
    assert material.master_key_for(master_key_id(new)) == new
    assert material.master_key_for("0123456789abcdef") is None
    with pytest.raises(KeyConfigurationError, match=r"TELEMED_MASTER_PREVIOUS_KEYS\[0\]"):
        load_key_material(settings.model_copy(update={"master_previous_keys": [SecretStr("c2hvcnQ=")]}))
