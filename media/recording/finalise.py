"""Finalising a recording: verify every segment against the journal, rebuild the frames, one WebM per participant.

Pure with respect to the database: it reads the store and the data key and returns what it found and made; the
caller (media.recording.services) records the result and seals the manifest. Running it twice gives the same
files, byte for byte (outputs are sealed deterministically and muxed bit-exact), so a retried task is harmless.

States:
- `complete`: every segment verified, the end marker present;
- `partial`: every journaled segment verified, but a recorder died (the node or its media worker crashed): the
  segment each of its tracks was writing is lost, and the gap is listed;
- `damaged`: something does not verify (a segment altered, cut, swapped, missing from the middle or the end,
  unlisted, or a journal entry forged). The problems name the segments; the WebMs still hold every segment that
  did verify, with the damaged ones marked as gaps, so nothing is silently dropped and nothing unverified shown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from media.recording import packets
from media.recording.capture import end_key, journal_key
from media.recording.encryption import Tampered, open_sealed, seal_bytes
from media.recording.packets import AssembledTrack, CapturedTrack
from media.recording.storage import RecordingStorage, StoredFileMissing
from media.recording.webm import TimedFrame, mux

_SEGMENT = re.compile(r"^segments/(?P<track>[a-z]+\.(?:audio|video)\.\d+)/(?P<index>\d{5})\.seg(?P<part>\.part)?$")
_JOURNAL = re.compile(r"^journal/(?P<track>[a-z]+\.(?:audio|video)\.\d+)\.(?P<index>\d{5})\.json$")
#: A frame lasts this long at the end of a stream (the muxer knows no durations): 20 ms Opus, ~33 ms video.
LAST_FRAME_MS = {"audio": 20, "video": 33}


@dataclass
class Output:
    participant: str
    key: str
    sha256: str
    size: int
    plaintext_size: int
    media_sha256: str
    media_sha1: str  # base64, as FHIR's Attachment.hash
    duration_ms: int
    video_frames: int
    audio_frames: int
    codecs: list[str]


@dataclass
class Finalised:
    state: str
    problems: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # unfinished segments (partial)
    outputs: list[Output] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)  # the verified manifest
    origin: float = 0.0  # the timeline's zero, Unix seconds
    duration_ms: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def manifest(self, recording_id: str) -> dict[str, Any]:
        """What the clinic seals: every segment and output with its hash, the state, the gaps."""
        return {"recording": recording_id, "state": self.state, "problems": self.problems, "lost": self.lost,
                "segments": self.segments, "gaps": self.gaps, "origin": self.origin, "duration_ms": self.duration_ms,
                "outputs": [{"participant": o.participant, "sha256": o.sha256, "size": o.size,
                             "media_sha256": o.media_sha256,
                             "duration_ms": o.duration_ms, "codecs": o.codecs} for o in self.outputs]}


def output_key(recording_id: str, participant: str) -> str:
    return f"{recording_id}/media/{participant}.webm"


def _entry(raw: bytes, key: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
        entry, mac = document["entry"], document["mac"]
    except (ValueError, KeyError, TypeError):
        return None
    body = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    return entry if isinstance(entry, dict) and hmac.compare_digest(expected, str(mac)) else None


def finalise(storage: RecordingStorage, recording_id: str, data_key: bytes) -> Finalised:
    result = Finalised(state="complete")
    mac_key = journal_key(data_key)
    files: dict[tuple[str, int], str] = {}
    parts: dict[tuple[str, int], str] = {}
    journal: dict[tuple[str, int], dict[str, Any]] = {}
    prefix = f"{recording_id}/"
    for key in storage.list(recording_id):
        name = key.removeprefix(prefix)
        if segment := _SEGMENT.match(name):
            where = (segment["track"], int(segment["index"]))
            (parts if segment["part"] else files)[where] = key
        elif entry_name := _JOURNAL.match(name):
            entry = _entry(storage.get(key), mac_key)
            listed = (str(entry_name["track"]), int(entry_name["index"]))
            if entry is None or (entry.get("track"), entry.get("index")) != listed:
                result.problems.append(f"journal entry {listed[0]}#{listed[1]} does not authenticate")
            else:
                journal[listed] = entry
    end = None
    try:
        end = _entry(storage.get(end_key(recording_id)), mac_key)
        if end is None:
            result.problems.append("the end marker does not authenticate")
    except StoredFileMissing:
        pass

    captured: dict[str, CapturedTrack] = {}
    spans: dict[tuple[str, int], tuple[float, float] | None] = {}  # arrival times of each segment read
    damaged: list[tuple[str, int]] = []
    for (track, index), entry in sorted(journal.items()):
        name = f"{track}#{index}"
        stored = files.get((track, index)) or parts.get((track, index))
        if stored is None:
            result.problems.append(f"segment {name} is missing")
            damaged.append((track, index))
            continue
        sealed = storage.get(stored)
        problem = _check_segment(sealed, data_key, recording_id, track, index, entry)
        if problem is not None:
            result.problems.append(f"segment {name}: {problem}")
            damaged.append((track, index))
            continue
        _, plaintext = open_sealed(sealed, data_key)
        try:
            spans[track, index] = captured.setdefault(track, CapturedTrack(track)).add_segment(plaintext)
        except packets.Unreadable as exc:
            result.problems.append(f"segment {name}: {exc}")
            damaged.append((track, index))
            continue
        result.segments.append({"track": track, "index": index, "sha256": entry["sha256"], "size": entry["size"]})
    for where in sorted(set(files) - set(journal)):
        result.problems.append(f"segment {where[0]}#{where[1]} is not in the journal")
    _check_sequences(result, journal, end)
    _unfinished(result, storage, recording_id, data_key, journal, parts, end, captured, spans)
    if result.problems:
        result.state = "damaged"
    elif (end is None and journal) or result.lost:
        result.state = "partial"
    elif end is None:
        result.state = "damaged"
        result.problems.append("nothing was recorded and the recording was not stopped cleanly")
    _build_outputs(result, storage, recording_id, data_key, captured)
    _mark_gaps(result, spans, damaged)
    return result


def _check_segment(sealed: bytes, data_key: bytes, recording_id: str, track: str, index: int,
                   entry: dict[str, Any]) -> str | None:
    """Why this segment cannot be trusted, or None."""
    if hashlib.sha256(sealed).hexdigest() != entry.get("sha256") or len(sealed) != entry.get("size"):
        return "its hash does not match the journal (altered, cut short or replaced)"
    try:
        header, _ = open_sealed(sealed, data_key)
    except Tampered as exc:
        return f"does not decrypt: {exc}"
    fields = header.fields
    if (fields.get("recording"), fields.get("track"), fields.get("index")) != (recording_id, track, index):
        return f"it is segment {fields.get('track')}#{fields.get('index')} of recording {fields.get('recording')}"
    return None


def _check_sequences(result: Finalised, journal: dict[tuple[str, int], dict[str, Any]],
                     end: dict[str, Any] | None) -> None:
    """Every track's journaled segments run from 0 without a hole and, after a clean stop, up to the end
    marker's last index."""
    indices: dict[str, list[int]] = {}
    for track, index in journal:
        indices.setdefault(track, []).append(index)
    ended = (end or {}).get("tracks", {})
    for track in sorted(set(indices) | set(ended)):
        present = sorted(indices.get(track, []))
        last = ended.get(track, present[-1] if present else -1) if end is not None else (present[-1] if present else -1)
        missing = [i for i in range(last + 1) if i not in present]
        if missing:
            result.problems.append(f"segments {', '.join(f'{track}#{i}' for i in missing)} are missing")


def _unfinished(result: Finalised, storage: RecordingStorage, recording_id: str, data_key: bytes,
                journal: dict[tuple[str, int], dict[str, Any]], parts: dict[tuple[str, int], str],
                end: dict[str, Any] | None, captured: dict[str, CapturedTrack],
                spans: dict[tuple[str, int], tuple[float, float] | None]) -> None:
    """Segments left `.part` and never journaled: their recorder died (the node, or a media worker).

    Only a track's tail can be like that: the segments right after its last journaled one (a slow disk may hold
    back one that was complete besides the one being written). One that authenticates to its last chunk and
    names this recording, track and index is recovered (its chunks are sealed under this recording's key, so
    nobody without it could have made it); the others are lost and listed. Anything else unjournaled is damage.
    """
    ended = (end or {}).get("tracks", {})
    journaled: dict[str, int] = {}
    for track, _index in journal:
        journaled[track] = journaled.get(track, 0) + 1
    tails: dict[str, list[int]] = {}
    for track, index in sorted(parts):
        if (track, index) not in journal:
            tails.setdefault(track, []).append(index)
    for track, indices in tails.items():
        expected = journaled.get(track, 0)
        for index in indices:
            name = f"{track}#{index}"
            if track in ended or index != expected:
                result.problems.append(f"segment {name} was left unfinished")
                continue
            expected += 1
            sealed = storage.get(parts[track, index])
            try:
                header, plaintext = open_sealed(sealed, data_key)
                fields = header.fields
                if (fields.get("recording"), fields.get("track"), fields.get("index")) != (recording_id, track, index):
                    raise Tampered("not this segment")
                spans[track, index] = captured.setdefault(track, CapturedTrack(track)).add_segment(plaintext)
            except (Tampered, packets.Unreadable):
                result.lost.append(name)
                continue
            result.segments.append({"track": track, "index": index, "sha256": hashlib.sha256(sealed).hexdigest(),
                                    "size": len(sealed), "recovered": True})


def _build_outputs(result: Finalised, storage: RecordingStorage, recording_id: str, data_key: bytes,
                   captured: dict[str, CapturedTrack]) -> None:
    assembled = {track: packets.assemble(capture) for track, capture in captured.items()}
    offsets = _clock_offsets(assembled)
    times = [frame.sender_time + offsets[track] for track, item in assembled.items() for frame in item.frames]
    if not times:
        return
    result.origin = min(times)
    per_participant: dict[str, dict[str, list[TimedFrame]]] = {}
    epochs: dict[str, dict[int, tuple[float, float]]] = {}
    for track, item in sorted(assembled.items()):
        role, kind, epoch = track.split(".")
        frames = per_participant.setdefault(role, {"video": [], "audio": []})[kind]
        started = False
        previous = 0
        for frame in item.frames:
            if kind == "video" and not started and not frame.keyframe:
                continue  # undecodable before the first keyframe of this connection
            started = True
            # Never before the frame sent ahead of it: two sender reports can map neighbouring frames a few ms
            # out of order, and the sort below would then put a delta frame before its keyframe (unplayable).
            at = max(previous, round((frame.sender_time + offsets[track] - result.origin) * 1000))
            previous = at
            frames.append(TimedFrame(frame.data, at, frame.keyframe))
        if item.frames:
            first = item.frames[0].sender_time + offsets[track] - result.origin
            last = item.frames[-1].sender_time + offsets[track] - result.origin + LAST_FRAME_MS[kind] / 1000
            span = epochs.setdefault(role, {}).get(int(epoch))
            epochs[role][int(epoch)] = (min(first, span[0]), max(last, span[1])) if span else (first, last)
    for role, spans in epochs.items():
        ordered = [spans[e] for e in sorted(spans)]
        for before, after in itertools.pairwise(ordered):
            if after[0] > before[1]:
                result.gaps.append({"participant": role, "start_ms": round(before[1] * 1000),
                                    "end_ms": round(after[0] * 1000), "reason": "reconnection"})
    duration = 0
    for role in sorted(per_participant):
        streams = per_participant[role]
        for frames in streams.values():
            frames.sort(key=lambda f: f.at_ms)
        plaintext = mux(streams["video"], streams["audio"])
        key = output_key(recording_id, role)
        sealed = seal_bytes(data_key, {"recording": recording_id, "track": f"output.{role}", "index": 0,
                                       "kind": "webm"}, plaintext)
        storage.put(key, sealed)
        ends = [f.at_ms + LAST_FRAME_MS[kind] for kind, frames in streams.items() for f in frames[-1:]]
        duration_ms = max(ends, default=0)
        duration = max(duration, duration_ms)
        result.outputs.append(Output(role, key, hashlib.sha256(sealed).hexdigest(), len(sealed), len(plaintext),
                                     hashlib.sha256(plaintext).hexdigest(),
                                     base64.b64encode(hashlib.sha1(plaintext).digest()).decode(),  # noqa: S324  # FHIR's
                                     duration_ms, len(streams["video"]), len(streams["audio"]),
                                     [name for name, frames in (("vp8", streams["video"]), ("opus", streams["audio"]))
                                      if frames]))
    result.duration_ms = duration
    result.stats = {track: {"packets": item.packets, "frames": len(item.frames), "incomplete": item.incomplete_frames,
                            "reported": item.reported} for track, item in assembled.items()}


def _mark_gaps(result: Finalised, spans: dict[tuple[str, int], tuple[float, float] | None],
               damaged: list[tuple[str, int]]) -> None:
    """Mark where damaged and lost segments were, by the arrival times of the segments around them (to within a
    transit delay of the timeline): a damaged one from the end of the one before to the start of the one after;
    a lost one (the recorder died writing it) from the end of the last one read of its track to its next
    connection's start, or open-ended."""
    def at(seconds: float) -> int:
        return max(0, round((seconds - result.origin) * 1000))

    for track, index in damaged:
        before, after = spans.get((track, index - 1)), spans.get((track, index + 1))
        result.gaps.append({"participant": track.split(".")[0], "start_ms": at(before[1]) if before else 0,
                            "end_ms": at(after[0]) if after else None,
                            "reason": f"segment {track}#{index} failed verification"})
    for name in result.lost:
        lost_track = name.split("#")[0]
        role, kind, epoch = lost_track.split(".")
        before = max((span for (t, _), span in spans.items() if t == lost_track and span is not None),
                     key=lambda span: span[1], default=None)
        later = [span[0] for (t, _), span in spans.items()
                 if span is not None and t.startswith(f"{role}.{kind}.") and int(t.split(".")[2]) > int(epoch)]
        result.gaps.append({"participant": role, "start_ms": at(before[1]) if before else 0,
                            "end_ms": at(min(later)) if later else None,
                            "reason": f"segment {name} was being written when its recorder stopped"})
    result.gaps.sort(key=lambda gap: (gap["participant"], gap["start_ms"]))


def _clock_offsets(assembled: dict[str, AssembledTrack]) -> dict[str, float]:
    """Per track, what to add to its sender times to place them on the server's clock.

    The audio and video of one connection whose times both come from sender reports share the sender's clock:
    they get one offset (the smallest transit delay seen on either), which keeps them in sync. A track without
    reports is placed on its own.
    """
    offsets: dict[str, float] = {}
    connections: dict[str, list[str]] = {}
    for track in assembled:
        role, _, epoch = track.split(".")
        connections.setdefault(f"{role}.{epoch}", []).append(track)
    for tracks in connections.values():
        reported = [t for t in tracks if assembled[t].reported and assembled[t].frames]
        shared = min((assembled[t].min_delay for t in reported), default=0.0)
        for track in tracks:
            offsets[track] = shared if track in reported and len(reported) == len(
                [t for t in tracks if assembled[t].frames]) else assembled[track].min_delay
    return offsets
