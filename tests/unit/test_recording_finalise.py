"""Finalisation of recordings built from synthetic packets: complete, tampered in each way, cut off by a crash.

Segments are written by the live capture code (TrackCapture, the writer thread, the journal) with a fake clock
(tests.recording_helpers); only the packets are made up (Opus packets are opaque bytes to the muxer, VP8 frames
carry a real payload descriptor and keyframe header).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import av
import pytest

from media.recording import encryption
from media.recording.capture import RecordingSpec, journal_entry_key, segment_key
from media.recording.finalise import finalise
from media.recording.storage import PART, LocalStorage
from tests.recording_helpers import write_recording

SECONDS = 25.0  # three 10-second segments per track


def _record(storage: LocalStorage, recording_id: str, data_key: bytes, *, stop: bool = True) -> dict[str, int]:
    return write_recording(storage, RecordingSpec(recording_id, data_key, 10.0), SECONDS, stop=stop)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "recordings")


def test_a_complete_recording_verifies_and_gives_one_webm_per_participant(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    last = _record(storage, "rec-1", key)
    result = finalise(storage, "rec-1", key)

    assert result.state == "complete", result.problems
    assert last == {"physician.audio.0": 2, "patient.audio.0": 2, "physician.video.0": 2}
    assert len(result.segments) == 9
    outputs = {o.participant: o for o in result.outputs}
    assert set(outputs) == {"physician", "patient"}
    assert outputs["physician"].audio_frames == outputs["patient"].audio_frames == int(SECONDS * 50)
    assert outputs["physician"].video_frames == int(SECONDS * 50) // 3 + 1
    assert outputs["physician"].codecs == ["vp8", "opus"]
    assert abs(outputs["patient"].duration_ms - SECONDS * 1000) <= 40
    sealed = storage.get(outputs["patient"].key)
    assert hashlib.sha256(sealed).hexdigest() == outputs["patient"].sha256
    _, webm = encryption.open_sealed(sealed, key)
    assert webm.startswith(b"\x1a\x45\xdf\xa3")  # EBML: a Matroska/WebM file
    assert b"\xfc\x00\x00\x00\x05" in webm
    assert b"\xfc\x00\x00\x00\x05" not in sealed  # the media is not readable at rest (the header names ids only)
    for folder in (storage.root / "rec-1", storage.root / "rec-1" / "segments", storage.root / "rec-1" / "media"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_finalising_twice_gives_the_same_files_and_manifest(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    _record(storage, "rec-1", key)
    first = finalise(storage, "rec-1", key)
    files = {o.key: storage.get(o.key) for o in first.outputs}
    second = finalise(storage, "rec-1", key)

    assert second.manifest("rec-1") == first.manifest("rec-1")
    assert {o.key: storage.get(o.key) for o in second.outputs} == files


def _segment_path(storage: LocalStorage, recording_id: str, track: str, index: int) -> Path:
    return storage.root / segment_key(recording_id, track, index)


def test_a_flipped_byte_marks_the_recording_damaged_naming_the_segment(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    _record(storage, "rec-1", key)
    path = _segment_path(storage, "rec-1", "patient.audio.0", 1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    result = finalise(storage, "rec-1", key)
    assert result.state == "damaged"
    assert any("patient.audio.0#1" in problem for problem in result.problems), result.problems
    patient = next(o for o in result.outputs if o.participant == "patient")
    assert patient.audio_frames == int(SECONDS * 50) - 500  # the damaged segment's 10 s are not shown


def test_a_segment_cut_short_is_found_even_when_its_journal_entry_is_rewritten(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    _record(storage, "rec-1", key)
    path = _segment_path(storage, "rec-1", "physician.video.0", 0)
    data = path.read_bytes()
    assert len(data) > encryption.SEALED_CHUNK_BYTES  # more than one chunk: one can be cut off
    header = encryption.read_header(io.BytesIO(data))
    chunks = -(-(len(data) - header.length) // encryption.SEALED_CHUNK_BYTES)
    cut = data[:header.length + (chunks - 1) * encryption.SEALED_CHUNK_BYTES]  # the last chunk, exactly
    path.write_bytes(cut)

    result = finalise(storage, "rec-1", key)
    assert result.state == "damaged"
    assert any("physician.video.0#0" in p and "hash" in p for p in result.problems), result.problems

    # Even with the journal's hash forged to match (no MAC key: the entry no longer authenticates) ...
    journal = storage.root / journal_entry_key("rec-1", "physician.video.0", 0)
    journal.write_bytes(journal.read_bytes().replace(
        hashlib.sha256(data).hexdigest().encode(), hashlib.sha256(cut).hexdigest().encode()))
    result = finalise(storage, "rec-1", key)
    assert any("physician.video.0#0" in p for p in result.problems), result.problems
    # ... and the chunks themselves tell that the last one is missing.
    with pytest.raises(encryption.Tampered, match="cut short"):
        encryption.open_sealed(cut, key)


def test_two_segments_swapped_are_both_named(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    _record(storage, "rec-1", key)
    first, second = (_segment_path(storage, "rec-1", "patient.audio.0", i) for i in (0, 1))
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)

    result = finalise(storage, "rec-1", key)
    assert result.state == "damaged"
    assert any("patient.audio.0#0" in p for p in result.problems)
    assert any("patient.audio.0#1" in p for p in result.problems)


def test_a_segment_from_another_recording_is_refused(storage: LocalStorage) -> None:
    key, other_key = encryption.new_data_key(), encryption.new_data_key()
    _record(storage, "rec-1", key)
    _record(storage, "rec-2", other_key)
    theirs = _segment_path(storage, "rec-2", "patient.audio.0", 2).read_bytes()
    _segment_path(storage, "rec-1", "patient.audio.0", 2).write_bytes(theirs)

    result = finalise(storage, "rec-1", key)
    assert result.state == "damaged"
    assert any("patient.audio.0#2" in p for p in result.problems), result.problems
    with pytest.raises(encryption.Tampered):
        encryption.open_sealed(theirs, key)  # another recording's key: it does not even decrypt


def test_a_last_segment_removed_with_its_journal_entry_is_missed(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    _record(storage, "rec-1", key)
    _segment_path(storage, "rec-1", "patient.audio.0", 2).unlink()
    (storage.root / journal_entry_key("rec-1", "patient.audio.0", 2)).unlink()

    result = finalise(storage, "rec-1", key)
    assert result.state == "damaged"
    assert any("patient.audio.0#2" in p and "missing" in p for p in result.problems), result.problems


def test_a_recording_cut_off_by_a_crash_is_partial_and_one_segment_short(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    last = _record(storage, "rec-1", key, stop=False)  # nobody completed the segments being written

    result = finalise(storage, "rec-1", key)
    assert result.state == "partial", result.problems
    assert sorted(result.lost) == sorted(f"{track}#{index}" for track, index in last.items())
    assert all((storage.root / (segment_key("rec-1", t, i) + PART)).exists() for t, i in last.items())
    patient = next(o for o in result.outputs if o.participant == "patient")
    assert patient.audio_frames == 2 * 500  # the two completed segments; the third was being written
    assert any(gap["participant"] == "patient" and gap["end_ms"] is None for gap in result.gaps)


def test_the_data_key_unwraps_only_with_its_master_key() -> None:
    master, other = encryption.new_data_key(), encryption.new_data_key()
    data_key = encryption.new_data_key()
    wrapped = encryption.wrap(data_key, master)
    assert encryption.unwrap(wrapped, master) == data_key
    with pytest.raises(encryption.Tampered):
        encryption.unwrap(wrapped, other)


def test_range_reads_decrypt_only_the_chunks_they_touch(storage: LocalStorage) -> None:
    key = encryption.new_data_key()
    plaintext = bytes(range(256)) * 1000  # 256000 bytes: four chunks
    sealed = encryption.seal_bytes(key, {"recording": "r", "track": "output.patient", "index": 0}, plaintext)
    header = encryption.read_header(io.BytesIO(sealed))
    reader = encryption.RangeReader(header, key, len(sealed))
    assert reader.size == len(plaintext)
    assert reader.chunks == 4
    offset, length = reader.chunk_span(2)
    assert reader.decrypt(2, sealed[offset:offset + length]) == plaintext[2 * encryption.CHUNK_BYTES:
                                                                          3 * encryption.CHUNK_BYTES]
    offset, length = reader.chunk_span(3)
    assert reader.decrypt(3, sealed[offset:offset + length]) == plaintext[3 * encryption.CHUNK_BYTES:]


def test_frames_stay_in_the_order_sent_when_sender_reports_disagree_by_a_few_ms(storage: LocalStorage) -> None:
    """Two sender reports that map neighbouring frames out of order (the second puts frame 1 40 ms before frame
    0) must not put a delta frame ahead of its keyframe: the file starts with the keyframe and decodes."""
    key = encryption.new_data_key()
    spec = RecordingSpec("rec-sr", key, 10.0)
    write_recording(storage, spec, 3.0, video_reports=((0, 1_800_000_000.0), (5400, 1_800_000_000.0 - 0.04)))
    result = finalise(storage, "rec-sr", key)
    assert result.state == "complete", result.problems
    output = next(o for o in result.outputs if o.participant == "physician")
    _, webm = encryption.open_sealed(storage.get(output.key), key)
    with av.open(io.BytesIO(webm)) as container:
        video = [packet for packet in container.demux(video=0) if packet.size]
    assert video[0].is_keyframe
    assert [packet.pts for packet in video] == sorted(packet.pts for packet in video)
    assert [bytes(packet)[-4:] for packet in video[:3]] == [n.to_bytes(4, "big") for n in range(3)]  # as sent
