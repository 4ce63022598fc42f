"""Encryption at rest for recordings: per-recording data keys and chunked AES-256-GCM files.

Every recording has its own random 256-bit data key, stored only wrapped (AES key wrap, RFC 3394) by a key
derived from the master key, with that master key's id, so the master key can be rotated (re-wrap) and
destroying the wrapped key erases the recording (crypto-erasure).

A sealed file (a live segment, or a finished WebM) is a header and fixed-size chunks:

    b"TMRS" | version (1) | header length (2, big endian) | header (canonical JSON) | chunk | chunk | ...

The header names the recording, the track and the segment's index and carries a random salt and nonce prefix.
Each chunk is `CHUNK_BYTES` of plaintext (the last one shorter, possibly empty) sealed with AES-256-GCM under a
key derived from the data key and the salt, with the nonce `prefix (7) | chunk counter (4) | last flag (1)` and
the whole header as associated data. So a flipped byte, a chunk cut off the end (no chunk says "last"), chunks
reordered, a segment renamed into another's place (its header names another index) or moved from another
recording (another key) all fail authentication. Plaintext never touches the disk: chunks are sealed in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

if TYPE_CHECKING:
    from media.recording.storage import LiveFile

MAGIC = b"TMRS"
VERSION = 1
CHUNK_BYTES = 64 * 1024
TAG_BYTES = 16
SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES
_PREFIX = struct.Struct(">4sBH")
_WRAP_INFO = b"telemed recording data key wrap v1"
_CHUNK_INFO = b"telemed recording chunk key v1"


class Tampered(ValueError):
    """A sealed file does not authenticate: altered, cut short, reordered, or not the file it claims to be."""


def new_data_key() -> bytes:
    return secrets.token_bytes(32)


def wrapping_key(master_key: bytes) -> bytes:
    """The key-encrypting key: derived, so the master key itself never encrypts anything directly."""
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_WRAP_INFO).derive(master_key)


def wrap(data_key: bytes, master_key: bytes) -> bytes:
    return aes_key_wrap(wrapping_key(master_key), data_key)


def unwrap(wrapped: bytes, master_key: bytes) -> bytes:
    """The data key; Tampered if the wrapped key was altered or wrapped under another master key."""
    try:
        return aes_key_unwrap(wrapping_key(master_key), wrapped)
    except InvalidUnwrap:
        raise Tampered("the recording's data key does not unwrap with this master key") from None


@dataclass(frozen=True)
class Header:
    """What a sealed file says it is; authenticated by every chunk."""

    fields: dict[str, Any]
    raw: bytes  # the bytes as stored (associated data of every chunk)

    @property
    def length(self) -> int:
        return len(self.raw)


def _chunk_cipher(data_key: bytes, salt: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=SHA256(), length=32, salt=salt, info=_CHUNK_INFO).derive(data_key))


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


def make_header(fields: dict[str, Any], *, salt: bytes | None = None) -> Header:
    """A header with a fresh random salt and nonce prefix, or ones derived from `salt` (see `seal_bytes`)."""
    seed = salt if salt is not None else secrets.token_bytes(23)
    body = dict(fields, salt=seed[:16].hex(), nonce_prefix=seed[16:23].hex())
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return Header(body, _PREFIX.pack(MAGIC, VERSION, len(encoded)) + encoded)


def read_header(stream: BinaryIO) -> Header:
    prefix = stream.read(_PREFIX.size)
    if len(prefix) != _PREFIX.size:
        raise Tampered("too short for a sealed file")
    magic, version, length = _PREFIX.unpack(prefix)
    if magic != MAGIC or version != VERSION:
        raise Tampered("not a sealed recording file")
    encoded = stream.read(length)
    try:
        fields = json.loads(encoded)
        bytes.fromhex(fields["salt"]), bytes.fromhex(fields["nonce_prefix"])
    except (ValueError, KeyError, TypeError):
        raise Tampered("the header is unreadable") from None
    return Header(fields, prefix + encoded)


class SealedWriter:
    """Seals plaintext into chunks as it comes and writes each full chunk at once (a crash loses the rest).

    `close()` seals the last chunk; a file without it is detectably cut short. The SHA-256 and size are of the
    sealed bytes, as stored: what the manifest lists.
    """

    def __init__(self, out: BinaryIO | LiveFile, data_key: bytes, header_fields: dict[str, Any],
                 *, salt: bytes | None = None) -> None:
        self.header = make_header(header_fields, salt=salt)
        self._out = out
        self._cipher = _chunk_cipher(data_key, bytes.fromhex(self.header.fields["salt"]))
        self._prefix = bytes.fromhex(self.header.fields["nonce_prefix"])
        self._buffer = bytearray()
        self._counter = 0
        self._hash = hashlib.sha256()
        self.size = 0
        self.plaintext_size = 0
        self.closed = False
        self._emit(self.header.raw)

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.plaintext_size += len(data)
        while len(self._buffer) >= CHUNK_BYTES:
            self._seal(bytes(self._buffer[:CHUNK_BYTES]), last=False)
            del self._buffer[:CHUNK_BYTES]

    def close(self) -> str:
        """Seal the last chunk; returns the sealed file's SHA-256 (hex)."""
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self.closed = True
        return self._hash.hexdigest()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def _seal(self, plaintext: bytes, *, last: bool) -> None:
        sealed = self._cipher.encrypt(_nonce(self._prefix, self._counter, last), plaintext, self.header.raw)
        self._counter += 1
        self._emit(sealed)
        self._out.flush()  # a live file makes each chunk durable as it is sealed

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._hash.update(data)
        self.size += len(data)


def seal_bytes(data_key: bytes, header_fields: dict[str, Any], plaintext: bytes) -> bytes:
    """A whole sealed file in memory (for what is produced at once: a finished WebM).

    Deterministic: the salt and nonce prefix are a MAC of the header fields and the plaintext under the data key,
    so sealing the same file twice (a finalisation run again) gives the same bytes, and two different plaintexts
    never share a key and nonce.
    """
    mac = hmac.new(data_key, b"telemed sealed output v1", hashlib.sha256)
    mac.update(json.dumps(header_fields, sort_keys=True).encode() + b"\0")
    mac.update(plaintext)
    out = io.BytesIO()
    writer = SealedWriter(out, data_key, header_fields, salt=mac.digest()[:23])
    writer.write(plaintext)
    writer.close()
    return out.getvalue()


def open_chunks(sealed: bytes, data_key: bytes) -> tuple[Header, Iterator[bytes]]:
    """The header and the plaintext chunks of a whole sealed file, each authenticated as it is yielded."""
    header = read_header(io.BytesIO(sealed))
    return header, _chunks(sealed, header, data_key)


def _chunks(sealed: bytes, header: Header, data_key: bytes) -> Iterator[bytes]:
    cipher = _chunk_cipher(data_key, bytes.fromhex(header.fields["salt"]))
    prefix = bytes.fromhex(header.fields["nonce_prefix"])
    body = memoryview(sealed)[header.length:]
    count = max(1, -(-len(body) // SEALED_CHUNK_BYTES))
    for index in range(count):
        piece = bytes(body[index * SEALED_CHUNK_BYTES:(index + 1) * SEALED_CHUNK_BYTES])
        yield decrypt_chunk(cipher, prefix, header, index, piece, last=index == count - 1)


def decrypt_chunk(cipher: AESGCM, prefix: bytes, header: Header, index: int, piece: bytes, *, last: bool) -> bytes:
    try:
        return cipher.decrypt(_nonce(prefix, index, last), piece, header.raw)
    except InvalidTag:
        if last:
            try:  # authentic, but not marked last: the file was cut short after this chunk
                cipher.decrypt(_nonce(prefix, index, False), piece, header.raw)
            except InvalidTag:
                pass
            else:
                raise Tampered("cut short: its last chunk is missing") from None
        raise Tampered(f"chunk {index} does not authenticate (altered, reordered or from another file)") from None


def open_sealed(sealed: bytes, data_key: bytes) -> tuple[Header, bytes]:
    """The header and whole plaintext of a sealed file; Tampered if any of it does not authenticate."""
    header, chunks = open_chunks(sealed, data_key)
    return header, b"".join(chunks)


class RangeReader:
    """Random access to a sealed file's plaintext, decrypting only the chunks a range touches (playback)."""

    def __init__(self, header: Header, data_key: bytes, sealed_size: int) -> None:
        self.header = header
        self._cipher = _chunk_cipher(data_key, bytes.fromhex(header.fields["salt"]))
        self._prefix = bytes.fromhex(header.fields["nonce_prefix"])
        body = sealed_size - header.length
        self.chunks = max(1, -(-body // SEALED_CHUNK_BYTES))
        last_sealed = body - (self.chunks - 1) * SEALED_CHUNK_BYTES
        if last_sealed < TAG_BYTES:
            raise Tampered("cut short inside a chunk")
        self.size = (self.chunks - 1) * CHUNK_BYTES + last_sealed - TAG_BYTES

    def chunk_span(self, index: int) -> tuple[int, int]:
        """Where sealed chunk `index` lies in the file: (offset, length)."""
        start = self.header.length + index * SEALED_CHUNK_BYTES
        length = SEALED_CHUNK_BYTES if index < self.chunks - 1 else (
            self.size - (self.chunks - 1) * CHUNK_BYTES + TAG_BYTES)
        return start, length

    def decrypt(self, index: int, piece: bytes) -> bytes:
        return decrypt_chunk(self._cipher, self._prefix, self.header, index, piece, last=index == self.chunks - 1)
