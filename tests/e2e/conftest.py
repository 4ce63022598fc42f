"""The real server in a subprocess and a real Chromium driving it.

Everything here is synchronous on purpose: Playwright's sync API refuses to run inside an asyncio loop, so
the browser tests are plain `def` functions and these fixtures start and stop processes without a loop.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

from tests.services import free_port, stop
from tests.smtp import Sink, serve

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
READY_TIMEOUT_SECONDS = 30.0
PHONE_VIEWPORT = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def _ready_status(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


@contextmanager
def _serve(tmp_path: Path, database_url: str, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """`python -m server serve` on a free port of 127.0.0.1, on this test's database; yields its base URL."""
    with serve_process(tmp_path, database_url, extra_env) as (base, _):
        yield base


@contextmanager
def serve_process(tmp_path: Path, database_url: str, extra_env: dict[str, str] | None = None, *,
                  port: int | None = None, log_name: str = "server.log",
                  ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As `_serve`, with the process (a test may kill it) and a chosen port (a restart keeps the URL)."""
    port = port or free_port()
    data_dir = tmp_path / "server-var"
    log_path = tmp_path / log_name
    # Nothing from the developer's TELEMED_* variables or a `.env` (read from the working folder) leaks in.
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("TELEMED_")}
    env = {
        **inherited,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "TELEMED_DATA_DIR": str(data_dir),
        "TELEMED_DATABASE_URL": database_url,
        "TELEMED_PUBLIC_URL": f"http://127.0.0.1:{port}",  # the call's WebSocket URL and allowed Origin
        "TELEMED_ENV": "test",
        "TELEMED_ARGON2_MEMORY_KIB": "1024",
        "TELEMED_ARGON2_TIME_COST": "1",
        "TELEMED_ARGON2_PARALLELISM": "1",
        "TELEMED_LOG_LEVEL": "WARNING",
        # The waiting room opens an hour ahead, so a booking for the next free slot can check in at once.
        "TELEMED_CHECKIN_OPENS_MINUTES": "60",
        "TELEMED_JOIN_OPENS_MINUTES": "60",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "server", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while _ready_status(port) != 200:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n"
                            f"{log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process, timeout=10)


@pytest.fixture
def live_server(tmp_path: Path, database_url: str) -> Iterator[str]:
    """`python -m server serve` on a free port of 127.0.0.1, on this test's database; yields its base URL."""
    with _serve(tmp_path, database_url) as base:
        yield base


@pytest.fixture
def mail_sink() -> Iterator[tuple[Sink, int]]:
    """A real SMTP server on 127.0.0.1 that keeps what it receives (aiosmtpd, in its own thread)."""
    sink = Sink()
    for port in serve(sink):
        yield sink, port


@pytest.fixture
def live_server_with_mail(tmp_path: Path, database_url: str, mail_sink: tuple[Sink, int]) -> Iterator[str]:
    """The live server, sending its e-mail over plain SMTP to `mail_sink`."""
    _, port = mail_sink
    with _serve(tmp_path, database_url, {"TELEMED_SMTP_HOST": "127.0.0.1", "TELEMED_SMTP_PORT": str(port),
                                         "TELEMED_SMTP_STARTTLS": "false"}) as base:
        yield base


@pytest.fixture
def playwright_driver() -> Iterator[Playwright]:
    """Playwright's driver, per test: it runs its own loop, which must not outlive into the async tests."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; `make sysdeps` (scripts/install-system-deps.sh) installs it")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def phone_browser(playwright_driver: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium with a fresh profile, a Russian-speaking phone: 390x844, Accept-Language ru-RU."""
    context = playwright_driver.chromium.launch_persistent_context(
        tmp_path / "chromium-profile", executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport=PHONE_VIEWPORT, device_scale_factor=2, is_mobile=True, has_touch=True, locale="ru-RU",
        timezone_id="Europe/Moscow",
    )
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        context.close()
