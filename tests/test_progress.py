"""The run's progress: state from records and a fake clock, plain lines, the rich table, and
real runs under a pseudo-terminal, through pipes and with --quiet."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from burnin import progress as progress_module
from burnin.config import load_config
from burnin.errors import ConfigError
from burnin.live import HEADER, plain_lines, table
from burnin.progress import Progress, Reporter, ResultsFollower, Row, Snapshot, Step, live_view

MIN = 60.0


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _progress(clock: FakeClock, steps: tuple[Step, ...], ramp_s: float = 0.0) -> Progress:
    return Progress([("n1", 0, 0.0, steps)], clock, ramp_s=ramp_s)


MATMUL_30 = (Step("matmul", 30 * MIN),)
SHORT = (Step("matmul", 10.0), Step("membw", 10.0))
MEMBW_AT_11 = {"device": 0, "type": "kernel-start", "kernel": "membw", "elapsed_s": 11.0}
RUNNING = [
    {"device": 0, "kind": "device-start", "elapsed_s": 0.0},
    {"device": 0, "type": "kernel-start", "kernel": "matmul", "elapsed_s": 1.0},
    {"device": 0, "temp_c": 71.2, "power_w": 690.4, "elapsed_s": 5.0},
    {"device": 0, "type": "progress", "kernel": "matmul", "tflops": 760.0, "elapsed_s": 6.0},
    {"device": 0, "type": "progress", "kernel": "matmul", "tflops": 800.0, "elapsed_s": 7.0},
]


@pytest.mark.parametrize(
    ("steps", "ramp_s", "records", "now_s", "line", "eta_s"),
    [
        (MATMUL_30, 0.0, [], 5.0, "# progress gpu0 waiting", 30 * MIN),
        (MATMUL_30, 10.0, RUNNING[:1], 2.0, "# progress gpu0 ramping", 30 * MIN - 2.0),
        (
            MATMUL_30,
            0.0,
            RUNNING,
            12 * MIN + 1.0,
            "# progress gpu0 matmul 12/30 min 71 C 690 W 780 TFLOP/s",
            18 * MIN - 1.0,
        ),
        (
            SHORT,
            0.0,
            [*RUNNING[:2], MEMBW_AT_11],
            14.0,
            "# progress gpu0 membw 3/10 s",
            6.0,
        ),
        (
            SHORT,
            0.0,
            [*RUNNING, {"device": 0, "kind": "crash", "elapsed_s": 4.0}],
            9.0,
            "# progress gpu0 done matmul 3/10 s 71 C 690 W 780 TFLOP/s status crash",
            0.0,
        ),
        (
            SHORT,
            0.0,
            [*RUNNING[:2], {"device": 0, "type": "error", "error": "boom", "elapsed_s": 2.0}],
            3.0,
            "# progress gpu0 matmul 2/10 s status error",
            17.0,
        ),
        # Records of another device, or without one, change nothing.
        (SHORT, 0.0, [{"device": 7, "kind": "crash"}, {"kind": "interrupted"}], 0.0,
         "# progress gpu0 waiting", 20.0),
    ],
)  # fmt: skip
def test_state_from_records(
    steps: tuple[Step, ...],
    ramp_s: float,
    records: list[dict[str, Any]],
    now_s: float,
    line: str,
    eta_s: float,
) -> None:
    clock = FakeClock()
    prog = _progress(clock, steps, ramp_s)
    for record in records:
        prog.feed(record)
    clock.t = now_s
    snap = prog.snapshot()
    assert plain_lines(snap)[0] == line
    assert prog.eta_s() == pytest.approx(eta_s)
    assert snap.eta_s == pytest.approx(eta_s)


def _row(device: str = "gpu3", **kw: Any) -> Row:
    base: dict[str, Any] = {
        "device": device,
        "state": "running",
        "kernel": "matmul",
        "kernel_done_s": 12 * MIN,
        "kernel_total_s": 30 * MIN,
        "temp_c": 71.0,
        "power_w": 690.0,
        "tflops": 780.0,
        "status": "",
    }
    return Row(**{**base, **kw})


@pytest.mark.parametrize(
    ("rows", "elapsed_s", "eta_s", "expected"),
    [
        (
            [_row()],
            13 * MIN,
            18 * MIN,
            [
                "# progress gpu3 matmul 12/30 min 71 C 690 W 780 TFLOP/s",
                "# progress run 13 min elapsed, ETA 18 min",
            ],
        ),
        (
            [
                _row("gpu0", state="waiting", kernel="-", kernel_done_s=None, kernel_total_s=None,
                     temp_c=None, power_w=None, tflops=None),
                _row("gpu1", kernel="membw", kernel_done_s=3.0, kernel_total_s=10.0, tflops=None,
                     status="thermal-guard"),
            ],
            30.0,
            45.0,
            [
                "# progress gpu0 waiting",
                "# progress gpu1 membw 3/10 s 71 C 690 W status thermal-guard",
                "# progress run 30 s elapsed, ETA 45 s",
            ],
        ),
    ],
)  # fmt: skip
def test_plain_lines(rows: list[Row], elapsed_s: float, eta_s: float, expected: list[str]) -> None:
    assert plain_lines(Snapshot(elapsed_s, eta_s, tuple(rows))) == expected


@pytest.mark.parametrize(
    ("rows", "present"),
    [
        ([_row()], ["gpu3", "running", "matmul", "12/30 min", "71 C", "690 W", "780"]),
        ([_row("n1/gpu0", status="crash", state="done")], ["n1/gpu0", "done", "crash"]),
        # A name with markup stays text: drawn as written, never interpreted.
        ([_row("[bold]x[/bold]")], ["[bold]x[/bold]"]),
    ],
)
def test_rich_table(rows: list[Row], present: list[str]) -> None:
    console = Console(record=True, width=140)
    console.print(table(Snapshot(13 * MIN, 18 * MIN, tuple(rows))))
    text = console.export_text()
    assert "ETA 18 min" in text
    for name in HEADER:
        assert name in text
    for cell in present:
        assert cell in text


@pytest.mark.parametrize(
    ("chunks", "kinds"),
    [
        ([b'{"device": 0, "type": "start"}\n'], ["start"]),
        # A line still being written is read once it is complete, never half.
        ([b'{"device": 0, "type": "start"}\n{"device": 0, "ty', b'pe": "done"}\n'],
         ["start", "done"]),
        ([b"not json\n", b'{"device": 0, "type": "done"}\n'], ["done"]),
    ],
)  # fmt: skip
def test_results_follower(tmp_path: Path, chunks: list[bytes], kinds: list[str]) -> None:
    path = tmp_path / "results.jsonl"
    seen: list[dict[str, Any]] = []
    follower = ResultsFollower(path, seen.append)
    assert follower.poll() == 0  # no file yet
    for chunk in chunks:
        with path.open("ab") as fh:
            fh.write(chunk)
        follower.poll()
    assert [r["type"] for r in seen] == kinds


@pytest.mark.parametrize(
    ("interval_s", "ticks_at", "printed_at"),
    [
        (30.0, [0.0, 10.0, 29.0], []),
        (30.0, [0.0, 30.0, 45.0, 61.0], [30.0, 61.0]),
        # A clock that jumped past several intervals prints once, not once per interval.
        (1.0, [5.5, 5.9, 6.0], [5.5, 6.0]),
    ],
)
def test_plain_reporter_every_interval(
    interval_s: float, ticks_at: list[float], printed_at: list[float]
) -> None:
    clock, out = FakeClock(), io.StringIO()
    reporter = Reporter("plain", interval_s, out, threaded=False)
    reporter.attach(_progress(clock, MATMUL_30))
    printed = []
    for t in ticks_at:
        clock.t = t
        before = out.tell()
        reporter.tick()
        if out.tell() != before:
            printed.append(t)
    assert printed == printed_at
    assert len(out.getvalue().splitlines()) == 2 * len(printed_at)  # a device and the run
    assert all(line.startswith("# progress") for line in out.getvalue().splitlines())


def test_a_finished_run_prints_once_more_then_nothing() -> None:
    clock, out = FakeClock(), io.StringIO()
    reporter = Reporter("plain", 1.0, out, threaded=False)
    prog = _progress(clock, SHORT)
    reporter.attach(prog)
    prog.feed({"device": 0, "kind": "device-start", "elapsed_s": 0.0})
    prog.feed({"device": 0, "kind": "device-end", "elapsed_s": 20.0})
    for t in (21.0, 22.0, 23.0):
        clock.t = t
        reporter.tick()
    assert out.getvalue().splitlines() == [
        "# progress gpu0 done",
        "# progress run 21 s elapsed, ETA 0 s",
    ]


def test_two_nodes_share_one_view() -> None:
    clock, out = FakeClock(40.0), io.StringIO()
    reporter = Reporter("plain", 30.0, out, threaded=False)
    for node in ("a", "b"):
        reporter.attach(Progress([(node, 0, 0.0, MATMUL_30)], clock))
    reporter.tick()
    assert out.getvalue().splitlines()[:2] == [
        "# progress a/gpu0 waiting",
        "# progress b/gpu0 waiting",
    ]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "quiet", "mode"),
    [(io.StringIO(), False, "plain"), (_Tty(), False, "live"), (_Tty(), True, None)],
)
def test_live_view_mode(stream: io.StringIO, quiet: bool, mode: str | None) -> None:
    with live_view(30.0, quiet, stream):
        active = progress_module._ACTIVE[-1].mode if progress_module._ACTIVE else None
    assert active == mode
    assert not progress_module._ACTIVE


@pytest.mark.parametrize(
    ("overrides", "interval_s"),
    [([], 30.0), (["progress.interval_s=1"], 1.0)],
)
def test_progress_config(overrides: list[str], interval_s: float) -> None:
    assert load_config(None, overrides).progress.interval_s == interval_s


@pytest.mark.parametrize("bad", ["progress.interval_s=0", "progress.every=3"])
def test_progress_config_rejects(bad: str) -> None:
    with pytest.raises(ConfigError, match="progress"):
        load_config(None, [bad])


# Real runs: two CPU devices for three seconds, in a pseudo-terminal or through pipes.
RUN = [
    sys.executable, "-m", "burnin", "run", "--device", "cpu", "--duration", "3s",
    "--set", "cpu.devices=2", "--set", "kernels.matmul.cpu_size=32",
    "--set", 'run.kernels=["matmul"]', "--set", "progress.interval_s=1",
]  # fmt: skip
ENV = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}


def _run_in_pty(args: list[str], limit_s: float = 120.0) -> tuple[str, str]:
    """(stdout, what the terminal showed): stderr is a pseudo-terminal, stdout a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=ENV
    )
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                data = b""
            if not data and proc.poll() is not None:
                break
            shown += data
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    os.close(master)
    stdout = proc.stdout.read() if proc.stdout else b""
    proc.wait(timeout=10)
    return stdout.decode(), shown.decode(errors="replace")


@pytest.mark.slow
def test_live_view_on_a_terminal(tmp_path: Path) -> None:
    stdout, shown = _run_in_pty([*RUN, "--out", str(tmp_path)])
    for text in ("ETA", "device", "state", "kernel", "gpu0", "gpu1"):
        assert text in shown, shown
    assert "# progress" not in shown + stdout
    assert "# progress" not in stdout


@pytest.mark.parametrize(
    ("extra", "lines"),
    [([], True), (["--quiet"], False)],
)
@pytest.mark.slow
def test_progress_lines_when_piped(tmp_path: Path, extra: list[str], lines: bool) -> None:
    proc = subprocess.run(
        [*RUN, "--out", str(tmp_path), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert proc.returncode in (0, 1, 3), proc.stderr
    assert "# progress" not in proc.stdout  # stdout stays the machine-readable summary
    assert ("# progress gpu0" in proc.stderr) is lines, proc.stderr
    assert ("# progress gpu1" in proc.stderr) is lines
    assert ("ETA" in proc.stderr) is lines


@pytest.mark.slow
def test_quiet_on_a_terminal_draws_nothing(tmp_path: Path) -> None:
    _, shown = _run_in_pty([*RUN, "--out", str(tmp_path), "--quiet"])
    assert "ETA" not in shown
    assert "# progress" not in shown


def test_records_feed_through_a_tap() -> None:
    stored: list[dict[str, Any]] = []

    class Writer:
        def write(self, record: dict[str, Any]) -> None:
            stored.append(record)

        def close(self) -> None:
            pass

    clock = FakeClock(1.0)
    prog = _progress(clock, SHORT)
    tap = prog.tap(Writer())
    tap.write({"device": 0, "kind": "device-start", "elapsed_s": 0.0})
    tap.write({"device": 0, "temp_c": 50.0, "power_w": 100.0})
    assert len(stored) == 2
    row = prog.snapshot().rows[0]
    assert (row.state, row.temp_c, row.power_w) == ("ramping", 50.0, 100.0)
    assert json.dumps(stored[0])  # the store got the record unchanged
