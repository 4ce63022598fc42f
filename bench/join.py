"""Join time in a real browser: from the patient's click on Join to the first frame of the physician's video.

The real server runs in a subprocess (as the browser tests run it: TELEMED_ENV=test, ICE pinned to 127.0.0.1,
media workers as configured by default) and Debian's Chromium with a fake camera (30 fps) holds both sides. The
physician has joined first and is sending; then, round after round, the patient opens the call page, clicks Join
and leaves again once the first frame is shown. Each round is a whole join: camera and microphone, the join
request, the WebSocket, a new RTCPeerConnection (ICE, DTLS), the server's keyframe request to the physician's
browser, and that keyframe's way back through the server. Times come from the page's own clock
(`performance.now()` at the click, `requestVideoFrameCallback` at the first presented frame).

It reuses the browser tests' server and seeding (tests/e2e), so what is measured is what they test.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROUNDS = 8
MARK = """() => {
  window.__join = {};
  const button = document.querySelector('[data-join]');
  button.addEventListener('click', () => { window.__join.click = performance.now(); }, {capture: true, once: true});
  const video = document.querySelector('[data-remote-video]');
  video.requestVideoFrameCallback((now) => { window.__join.frame = now; });
}"""


def _measure(base: str, consultation: str, browser: Any) -> list[float]:
    from tests.e2e.seeding import DOCTOR_EMAIL
    from tests.e2e.test_call_flow import _sign_in

    physician = browser.new_context(permissions=["camera", "microphone"], locale="en-GB")
    patient = browser.new_context(permissions=["camera", "microphone"], locale="ru-RU")
    doctor = physician.new_page()
    _sign_in(doctor, base, DOCTOR_EMAIL)
    doctor.goto(f"{base}/clinic/consultations/{consultation}/call")
    doctor.get_by_test_id("join").click()
    doctor.wait_for_function("() => document.querySelector('[data-remote-state]').textContent.length > 0")
    page = patient.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    from tests.e2e.seeding import PATIENT_EMAIL

    _sign_in(page, base, PATIENT_EMAIL)
    times = []
    for _ in range(ROUNDS):
        page.goto(f"{base}/my/consultations/{consultation}/call")
        page.evaluate(MARK)
        page.get_by_test_id("join").click()
        page.wait_for_function("() => window.__join.frame !== undefined", timeout=20_000)
        marks = page.evaluate("() => window.__join")
        times.append((marks["frame"] - marks["click"]) / 1000)
        page.get_by_test_id("leave").click()
        page.wait_for_function("() => document.querySelector('[data-call]').dataset.state === 'done'")
    physician.close()
    patient.close()
    return times


def bench_join() -> None:
    """Print the join times (median, best, worst) over ROUNDS rounds."""
    from playwright.sync_api import sync_playwright

    from server.db.migrate import upgrade
    from tests.e2e.conftest import CHROMIUM, _serve
    from tests.e2e.seeding import admitted_consultation
    from tests.e2e.test_call_flow import CALL_ARGS

    with tempfile.TemporaryDirectory(prefix="telemed-join-") as folder:
        tmp = Path(folder)
        database_url = f"sqlite+aiosqlite:///{tmp / 'join.sqlite3'}"
        with ThreadPoolExecutor(1) as pool:
            pool.submit(upgrade, database_url).result()
            consultation = pool.submit(lambda: asyncio.run(admitted_consultation(database_url, tmp / "seed"))
                                       ).result()
        with _serve(tmp, database_url) as base, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CALL_ARGS)
            try:
                times = _measure(base, consultation, browser)
            finally:
                browser.close()
    print(f"{'join: click to first remote frame, Chromium (median)':<56} {statistics.median(times) * 1000:>8.0f} ms")
    print(f"{'join: best / worst of ' + str(len(times)):<56} {min(times) * 1000:>8.0f} / {max(times) * 1000:.0f} ms")
