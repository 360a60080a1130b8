"""Security: hostile strings from hardware stay inert in every output; outputs stay inside the run
directory; the harness makes no network connection; no NVML setter or reset is ever called.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_pynvml import FakeGpu, FakeNvml

from burnin.cli import cli
from burnin.errors import TelemetryError
from burnin.runtime import Runtime
from burnin.store import safe_name
from burnin.telemetry.base import DriverInfo, Event, Inventory, Sample
from burnin.telemetry.nvml import NvmlTelemetry

EVIL = '<script>alert(1)</script>"\n{}'
RUN = ["run", "--device", "cpu", "--set", "kernels.matmul.cpu_size=32",
       "--set", "telemetry.interval_s=0.1", "--set", "watchdog.timeout_s=10"]  # fmt: skip


class HostileTelemetry:
    """A card whose every string is hostile, busy with a hostile process, that later vanishes
    with a hostile error message (so the string reaches verdict messages too)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def device_count(self) -> int:
        return self.count

    def driver_info(self) -> DriverInfo:
        return DriverInfo(driver_version=EVIL, backend="fake")

    def inventory(self, index: int) -> Inventory:
        return Inventory(index=index, name=EVIL, serial=EVIL, uuid=EVIL, vbios_version=EVIL)

    def sample(self, index: int, elapsed_s: float) -> Sample:
        if index == 1 and elapsed_s > 0.4:
            raise TelemetryError(f"GPU is lost {EVIL}")
        return Sample(index=index, elapsed_s=elapsed_s, temp_c=50.0, power_w=100.0)

    def events(self, elapsed_s: float) -> list[Event]:
        return [Event(index=0, elapsed_s=elapsed_s, kind="xid", code=13, message=EVIL)]

    def processes(self, index: int) -> list[dict[str, Any]]:
        return [{"pid": 99999, "name": EVIL, "used_memory_mib": 1.0}]

    def close(self) -> None:
        pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Refuse (and record) every non-AF_UNIX connection and every name lookup."""
    attempts: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError("network access blocked by the test")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError("network access blocked by the test")
        return real_connect_ex(self, address)

    def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise socket.gaierror("name lookup blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [f"{k}={v}" for k, v in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


_PROM_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? -?[0-9][0-9.e+-]*$'
)


@pytest.mark.slow
def test_hostile_strings_are_inert_in_every_output(tmp_path: Path, no_network: list[Any]) -> None:
    runtime = Runtime(hostname=EVIL, telemetry_factory=lambda d: HostileTelemetry(len(d)))
    result = CliRunner().invoke(
        cli,
        [*RUN, "--duration", "1.5", "--set", "cpu.devices=2", "--force", "--out", str(tmp_path)],
        obj=runtime,
    )
    assert result.exit_code == 4, result.output  # device 1 was lost
    assert no_network == []  # no connection and no name lookup during a whole run
    (run_dir,) = tmp_path.iterdir()

    html = (run_dir / "report.html").read_text()
    parsed = _Tags()
    parsed.feed(html)
    assert "script" not in parsed.tags
    assert EVIL.split("\n")[0] in "".join(parsed.text)  # shown as text, not as markup
    assert "<script>" not in html

    data = json.loads((run_dir / "report.json").read_text())
    names = {g["name"] for g in data["gpus"]}
    assert names == {EVIL}
    lost = next(v for g in data["gpus"] for v in g["verdicts"] if v["check"] == "lost")
    assert "<script>alert(1)</script>" in lost["message"]

    junit = ET.fromstring((run_dir / "junit.xml").read_text())
    messages = [e.get("message", "") for e in junit.iter() if e.tag in ("error", "failure")]
    assert any("<script>alert(1)</script>" in m for m in messages)

    prom = (run_dir / "burnin.prom").read_text()
    for line in prom.splitlines():
        assert line.startswith("#") or _PROM_LINE.match(line), line
    assert 'serial="<script>alert(1)</script>\\"\\n{}"' in prom


@pytest.mark.parametrize(
    ("host", "expected"),
    [("../../etc", "etc"), ("/abs/path", "abs_path"), ("a/../../b", "a_.._.._b"),
     ("..", "node"), ("", "node"), ("node\x00x", "node_x"), ("x" * 100, "x" * 64),
     ("gpu-01.rack_3", "gpu-01.rack_3")],
)  # fmt: skip
def test_safe_name(host: str, expected: str) -> None:
    assert safe_name(host) == expected
    assert "/" not in safe_name(host) and safe_name(host) not in (".", "..")


@pytest.mark.slow
def test_no_output_escapes_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "a" / "runs"
    result = CliRunner().invoke(
        cli,
        [*RUN, "--duration", "0.3", "--set", "cpu.devices=1", "--out", str(out)],
        obj=Runtime(hostname="../../etc"),
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(run_dir) for p in written)
    assert (run_dir / "nodes" / "etc" / "results.jsonl").is_file()
    again = CliRunner().invoke(cli, ["report", str(run_dir), "--quiet"])
    assert again.exit_code == 0
    assert all(p.is_relative_to(run_dir) for p in tmp_path.rglob("*") if p.is_file())


# NVML calls that change a card, reset it or clear its counters. nvmlEventSet* only manages
# the harness's own event set (create/wait/free) and changes no card.
_FORBIDDEN = re.compile(r"^nvml(?!EventSet)\w*(Set|Reset|Clear|Modify|Remove|Create|Destroy)")


class RecordingModule:
    """Passes every attribute through to the fake module and records each NVML name used."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.names: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvml"):
            self.names.add(name)
        return getattr(self._module, name)


@pytest.mark.slow
def test_no_nvml_setter_is_ever_called_during_a_run(tmp_path: Path) -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(bus_id="00000000:19:00.0")])
    fake.queue_xid(0, 13)
    module = RecordingModule(fake)
    result = CliRunner().invoke(
        cli,
        [*RUN, "--duration", "0.5", "--set", "cpu.devices=2", "--out", str(tmp_path)],
        obj=Runtime(hostname="n", telemetry_factory=lambda d: NvmlTelemetry(module=module)),
    )
    assert result.exit_code in (0, 3), result.output
    # The run really went through NVML: identity, sensors and events were read.
    assert {"nvmlDeviceGetTemperatureV", "nvmlDeviceGetName"} <= module.names
    assert not [n for n in module.names if _FORBIDDEN.match(n)]
    assert not [name for name, _ in fake.calls if _FORBIDDEN.match(name)]


def test_nvml_backend_source_names_no_setter() -> None:
    """Static guard: no NVML name that changes a card appears anywhere in the backend."""
    import burnin.telemetry.nvml as backend
    import burnin.telemetry.nvml_inventory as inventory

    names: set[str] = set()
    for module in (backend, inventory):
        tree = ast.parse(Path(module.__file__).read_text())
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
    assert not [n for n in names if _FORBIDDEN.match(n)]
    assert _FORBIDDEN.match("nvmlDeviceSetPowerManagementLimit")  # the guard itself works
    assert _FORBIDDEN.match("nvmlDeviceResetGpuLockedClocks")
    assert _FORBIDDEN.match("nvmlDeviceClearEccErrorCounts")
    assert not _FORBIDDEN.match("nvmlEventSetCreate")


# Installed in every Python process of a subprocess run (sitecustomize), and so inherited by
# the forkserver's workers: it logs each Python-level connection or name lookup that is not
# a Unix socket, and each process that opened a results.jsonl (proof the hook ran there).
_AUDIT = """
import os, sys

LOG = os.environ["BURNIN_AUDIT_LOG"]

def _log(line):
    with open(LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()} {line}\\n")

def _hook(event, args):
    if event == "socket.connect" and not isinstance(args[1], (str, bytes)):
        _log(f"connect {args[1]!r}")
    elif event == "socket.getaddrinfo":
        _log(f"lookup {args[0]!r}")
    elif event == "open" and str(args[0]).endswith("results.jsonl"):
        _log("store")

sys.addaudithook(_hook)
"""


@pytest.mark.slow
def test_workers_make_no_network_connection_either(tmp_path: Path) -> None:
    """The parent is covered above; here every process of a real two-device run is watched."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_AUDIT, encoding="utf-8")
    log = tmp_path / "audit.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "BURNIN_AUDIT_LOG": str(log),
    }
    out = tmp_path / "runs"
    args = [*RUN, "--duration", "2", "--set", "cpu.devices=2", "--out", str(out), "--quiet"]
    args += ["--set", "run.kernels=['matmul', 'allreduce']"]
    done = subprocess.run(
        [sys.executable, "-m", "burnin", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = log.read_text(encoding="utf-8").splitlines()
    (run_dir,) = out.iterdir()
    results = (run_dir / "nodes").glob("*/results.jsonl")
    workers = {
        str(r["pid"])
        for path in results
        for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())
        if r.get("type") == "start"
    }
    hooked = {line.split()[0] for line in lines if line.endswith(" store")}
    assert len(workers) == 2 and workers <= hooked  # the hook ran in both workers
    assert [line for line in lines if " connect " in line or " lookup " in line] == []
