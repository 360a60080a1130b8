"""The HTML report in a real headless browser: it renders, bad cards come first, no scripts run."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

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
        if tag == "tr" and a.get("class") == "device":
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
