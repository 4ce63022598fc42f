"""A throw-away coturn (`turnserver`) on 127.0.0.1 for the TURN tests, with a random TURN-REST secret.

This is not the production configuration (docs/turn.md): there, loopback and private peers are denied so a TURN
allocation cannot reach the clinic's internal network. Here every participant is on 127.0.0.1, so loopback peers
must be allowed, and they are the only peers allowed: coturn listens, relays and sends on 127.0.0.1 alone.
Everything else it could open is off (TLS/DTLS, the telnet CLI, RFC 5780's second port, TCP relays), it reads
no /etc/turnserver.conf (`-n`) and no system database, and its log goes to a temporary file that failures show.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import LOCALHOST, stop, wait_until

REALM = "telemed.test"
RELAY_PORTS = 16  # one allocation per peer that uses TURN: a few per test
_BINDING_REQUEST, _BINDING_SUCCESS, _MAGIC_COOKIE = 0x0001, 0x0101, 0x2112A442


@dataclass(frozen=True)
class TurnServer:
    port: int
    secret: str
    relay_ports: range
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, transport: str = "udp") -> str:
        """A `turn:` URL as TELEMED_TURN_URLS lists them (aiortc takes `?transport=udp` or `tcp`)."""
        return f"turn:{LOCALHOST}:{self.port}?transport={transport}"

    def refused(self, username: str) -> bool:
        """Whether coturn answered 401 Unauthorized to a request carrying `username` (from its log)."""
        return any(f"user <{username}>" in line and "error 401" in line for line in self.log().splitlines())

    def log(self) -> str:
        """What coturn logged (allocations, 401s and why), for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, udp_only: bool = False) -> range:
    """`count` consecutive ports on 127.0.0.1 that nothing uses now, for UDP (and TCP unless `udp_only`).

    Drawn below Linux's ephemeral range (32768-60999), so the sockets other tests open do not take them meanwhile.
    """
    kinds = [socket.SOCK_DGRAM] if udp_only else [socket.SOCK_DGRAM, socket.SOCK_STREAM]
    for _ in range(200):
        start = random.randrange(20_000, 32_000 - count)  # noqa: S311  # a port number, not a secret
        ports = range(start, start + count)
        if all(_bindable(port, kind) for port in ports for kind in kinds):
            return ports
    raise RuntimeError(f"no {count} free consecutive ports on {LOCALHOST}")


def stun_binding_answers(port: int) -> bool:
    """Whether a STUN Binding request over UDP gets a success response: the server is serving."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", _BINDING_REQUEST, 0, _MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.bind((LOCALHOST, 0))  # an unbound socket's sendto would bind it to 0.0.0.0
        try:
            sock.sendto(request, (LOCALHOST, port))
            response = sock.recv(2048)
        except OSError:  # refused (nothing listening yet) or timed out
            return False
    return len(response) >= 20 and struct.unpack("!H", response[:2])[0] == _BINDING_SUCCESS \
        and response[8:20] == transaction


def tcp_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def turnserver_command(binary: str, *, port: int, secret: str, relay_ports: range, folder: Path) -> list[str]:
    """The command line; each option is explained in docs/turn.md ("Tested")."""
    return [
        binary, "-n",  # no configuration file: the system's /etc/turnserver.conf must not change the test
        f"--listening-ip={LOCALHOST}", f"--listening-port={port}", f"--relay-ip={LOCALHOST}",
        f"--min-port={relay_ports.start}", f"--max-port={relay_ports.stop - 1}",
        "--use-auth-secret", f"--static-auth-secret={secret}", f"--realm={REALM}", "--fingerprint",
        # Every participant is on 127.0.0.1, so loopback peers are needed, and they are the only ones allowed
        # (the allowed list takes priority over the denied one).
        "--allow-loopback-peers", f"--allowed-peer-ip={LOCALHOST}",
        "--denied-peer-ip=0.0.0.0-255.255.255.255", "--denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "--no-multicast-peers",
        "--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780", "--no-tcp-relay", "--relay-threads=1",
        f"--userdb={folder / 'turndb'}", "--no-auth-pings", "--no-dynamic-ip-list", "--no-dynamic-realms",
        f"--pidfile={folder / 'turnserver.pid'}",
        f"--log-file={folder / 'turnserver.log'}", "--simple-log", "--no-stdout-log", "--verbose",
    ]


@contextmanager
def turn_server(*, timeout: float = 10.0) -> Iterator[TurnServer]:
    """Start coturn on 127.0.0.1 (UDP and TCP on a free port) with a random secret; stopped at the block's end."""
    binary = shutil.which("turnserver")
    if binary is None:
        # Fail, never skip: `make sysdeps` (scripts/install-system-deps.sh) installs it, so absence is a broken setup.
        pytest.fail("turnserver (Debian's coturn) is not installed; run `make sysdeps` "
                    "(scripts/install-system-deps.sh)", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="telemed-coturn-") as name:
        folder = Path(name)
        port = free_ports(1).start
        relay_ports = free_ports(RELAY_PORTS, udp_only=True)
        secret = secrets.token_hex(32)
        command = turnserver_command(binary, port=port, secret=secret, relay_ports=relay_ports, folder=folder)
        output = folder / "turnserver.out"  # what it writes before its log file opens (bad options)
        with output.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=folder, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        server = TurnServer(port, secret, relay_ports, process, folder / "turnserver.log")
        try:
            ready = wait_until(lambda: process.poll() is not None
                               or (stun_binding_answers(port) and tcp_accepts(port)), timeout=timeout, interval=0.05)
            if not ready or process.poll() is not None:
                raise RuntimeError(f"turnserver on {LOCALHOST}:{port} did not answer within {timeout}s "
                                   f"(exit code {process.poll()}):\n{output.read_text(errors='replace')}\n"
                                   f"{server.log()[-8000:]}")
            yield server
        finally:
            stop(process, timeout=10)
