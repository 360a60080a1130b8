"""The HTML report in a real headless browser: it renders, bad cards come first, no scripts run,
nothing is fetched, and a rack's report prints to a handful of pages."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fakes import result_record, write_run

from burnin.reports import write_reports
from burnin.verdicts import evaluate

pytestmark = pytest.mark.browser

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)


class Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[str] = []
        self.run_status = ""
        self._in_run_status = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("data-card"):  # a flagged card's details, then the PASS cards' rows
            self.statuses.append(a.get("data-status") or "")
        self._in_run_status = a.get("id") == "run-status"

    def handle_data(self, data: str) -> None:
        if self._in_run_status and data.strip():
            self.run_status = data.strip()
            self._in_run_status = False


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        if os.environ.get("BURNIN_REQUIRE_BROWSER"):
            pytest.fail("chromium is required here (BURNIN_REQUIRE_BROWSER is set)")
        pytest.skip("chromium is not installed (.ci/run installs it)")
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_report_renders_in_chromium_with_bad_cards_first(tmp_path: Path) -> None:
    run_dir = write_run(
        tmp_path,
        devices=3,
        inventory={2: {"name": "<b>evil</b>"}},
        results={2: [result_record(2, wrong=4)]},
    )
    evaluate(run_dir)
    write_reports(run_dir)
    page = (run_dir / "report.html").as_uri()
    dom = _chromium("--dump-dom", page)
    assert dom.returncode == 0, dom.stderr
    rows = Rows()
    rows.feed(dom.stdout)
    assert rows.run_status == "FAIL"
    assert rows.statuses == ["FAIL", "PASS", "PASS"]
    assert "&lt;b&gt;evil&lt;/b&gt;" in dom.stdout  # escaped text, not markup

    shot = tmp_path / "report.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,900", page)
    assert done.returncode == 0, done.stderr
    assert shot.stat().st_size > 10_000  # a real rendered page, not a blank image


ROOT = Path(__file__).resolve().parents[1]
MAX_PAGES = 6  # summary, pull list, grid, distributions and three flagged cards


def _rack_report(tmp_path: Path) -> Path:
    """A 32-GPU rack (4 nodes x 8) with three flagged cards, judged and rendered."""
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_report.py"),
            "--nodes",
            "4",
            "--seconds",
            "120",
            "--keep",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "statuses: {'FAIL': 3, 'PASS': 29}" in done.stdout
    return tmp_path / "bench-run" / "report.html"


class DevTools:
    """Chromium's DevTools protocol over ``--remote-debugging-pipe`` (fds 3 and 4, messages
    ended by NUL): no port, no websocket library, nothing reachable from outside."""

    def __init__(self) -> None:
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()
        assert CHROMIUM is not None

        # The child reads fd 3 and writes fd 4: moved high first, so neither overwrites the other.
        def into_place() -> None:
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            close_fds=False,
            preexec_fn=into_place,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == method for e in self.events):
            assert time.monotonic() < deadline, f"no {method} event"
            self.events.append(self._read())

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._in], [], [], 60)
            assert ready, "the browser stopped answering"
            chunk = os.read(self._in, 1 << 20)
            assert chunk, "the browser closed its pipe"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._in)
        os.close(self._out)


class PullList(HTMLParser):
    """Where the pull list and the grid sit in the page, and the pull list's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []
        self.rows: list[dict[str, str | None]] = []
        self.cells: list[str] = []
        self._row: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") in ("pull-list", "fleet-grid"):
            self.order.append(a["id"] or "")
        if tag == "tr" and a.get("class") == "pull":
            self._row = a
            self.rows.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and data.strip():
            self.cells.append(data.strip())


@pytest.mark.slow
def test_rack_report_in_chromium_pull_list_first_no_network_and_six_printed_pages(
    tmp_path: Path,
) -> None:
    _chromium("--version")  # skips (or fails under CI) without a browser
    report = _rack_report(tmp_path)
    page = report.as_uri()
    browser = DevTools()
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=page)
        browser.wait_for("Page.loadEventFired")
        dom = browser.call(
            "Runtime.evaluate", session, expression="document.documentElement.outerHTML"
        )["result"]["value"]
        events = list(browser.events)
    finally:
        browser.close()
    requests = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert [u for u in requests if u != page] == []  # nothing fetched beyond the file itself
    console = [
        e
        for e in events
        if e.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")
    ]
    errors = [
        e
        for e in events
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
    ]
    assert console == [] and errors == []

    parsed = PullList()
    parsed.feed(dom)
    assert parsed.order == ["pull-list", "fleet-grid"]  # the pull list comes before the grid
    flagged = {(r["data-node"], r["data-gpu"]): r for r in parsed.rows}
    assert set(flagged) == {("node-001", "5"), ("node-002", "4"), ("node-003", "5")}
    actions = {key: r["data-action"] for key, r in flagged.items()}
    assert actions[("node-002", "4")] == "rma" and actions[("node-003", "5")] == "inspect-cooling"
    for row in parsed.rows:  # the bus id is on the row, as text a technician reads
        assert row["data-pci"] and row["data-pci"] in parsed.cells

    pdf = tmp_path / "report.pdf"
    done = _chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", page)
    assert done.returncode == 0, done.stderr
    from pypdf import PdfReader

    assert 1 <= len(PdfReader(pdf).pages) <= MAX_PAGES
