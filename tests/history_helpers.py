"""Helpers for the history tests: a throwaway PostgreSQL server, simulated sweeps, small reports.

The PostgreSQL server is real: ``initdb`` and ``pg_ctl`` of the system's PostgreSQL in a fresh
temporary directory, on a free port, socket in that directory. ``initdb`` refuses to run as
root, so as root the cluster belongs to the ``postgres`` system user (the Debian package makes
it) and every server command runs through ``runuser``. The simulated sweeps are real runs of
``burnin run --simulate`` through the CLI, made once per test session (each takes seconds).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from burnin.cli import cli

DATA = Path(__file__).parent / "data" / "history"
WEEK = timedelta(days=7)


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster; :meth:`new_database` gives each test its own database."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        reason = None
        if bindir is None:
            reason = (
                "PostgreSQL server binaries (initdb, pg_ctl) are not installed and could not be "
                "installed here (.ci/run installs the postgresql package)"
            )
        elif os.geteuid() == 0 and not _has_user("postgres"):
            reason = "initdb refuses to run as root and there is no 'postgres' user to run it"
        if reason:
            if os.environ.get("BURNIN_REQUIRE_POSTGRES"):
                pytest.fail(f"BURNIN_REQUIRE_POSTGRES is set: {reason}")
            pytest.skip(reason)
        assert bindir is not None
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="burnin-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.base / "data"
        self.port = _free_port()
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "burnin", "-N")
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off"
        )
        log = str(self.base / "server.log")
        self._pg("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")
        self.count = 0

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.prefix, str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr or done.stdout}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://burnin@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        self.count += 1
        name = f"burnin_test_{self.count}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="burnin", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


_SWEEPS: dict[str, Any] = {}


def simulated_sweeps(base: Path) -> tuple[Path, Path]:
    """Two real simulated sweeps of one 16-GPU fleet, the second dated a week after the first.

    Week 2 differs by two faults (tests/data/history/week2.toml). The week between them is
    written into the second run's manifest, and its reports are re-rendered from the store, so
    every figure comes from the runs themselves. Made once per session.
    """
    if "runs" in _SWEEPS:
        return _SWEEPS["runs"]
    from burnin.reports import write_reports
    from burnin.store import RunStore
    from burnin.verdicts import evaluate

    runs = []
    for week in ("week1", "week2"):
        out = base / week
        result = CliRunner().invoke(
            cli,
            [
                "run",
                "--simulate",
                str(DATA / f"{week}.toml"),
                "--duration",
                "20s",
                "--out",
                str(out),
                "--quiet",
            ],
        )
        assert result.exit_code == 0, result.output
        (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
        runs.append(run_dir)
    store = RunStore(runs[1])
    manifest = store.read_manifest()
    first = RunStore(runs[0]).read_manifest()
    for key in ("started_at", "finished_at"):
        stamp = datetime.fromisoformat(first[key].replace("Z", "+00:00")) + WEEK
        manifest[key] = stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.write_manifest(manifest)
    evaluate(runs[1])
    write_reports(runs[1])
    _SWEEPS["runs"] = (runs[0], runs[1])
    return _SWEEPS["runs"]


def write_report_run(base: Path, run_id: str, started_at: str, gpus: list[dict[str, Any]]) -> Path:
    """A run directory holding only a report.json (the ingest's contract), for small cases."""
    run_dir = base / run_id
    run_dir.mkdir(parents=True)
    entries = []
    for g in gpus:
        status = g.get("status", "PASS")
        entries.append(
            {
                "node": g.get("node", "node-00"),
                "index": g.get("index", 0),
                "uuid": g.get("uuid", f"GPU-{g['serial']}"),
                "serial": g["serial"],
                "sku": "H100-SXM5-80GB",
                "status": status,
                "verdicts": g.get(
                    "verdicts",
                    [
                        {
                            "check": "sdc",
                            "status": status,
                            "observed": 0,
                            "limit": 0,
                            "unit": "wrong elements",
                            "message": "m",
                            "action": g.get("action", "none"),
                        }
                    ],
                ),
                "metrics": {
                    "matmul_tflops": g.get("tflops", 790.0),
                    "membw_gbps": 2550.0,
                    "max_temp_c": 60.0,
                    "energy_kwh": 0.01,
                },
            }
        )
    worst = max((e["status"] for e in entries), key=["PASS", "WARN", "FAIL", "ERROR"].index)
    report = {
        "schema": "burnin.report/1",
        "run_id": run_id,
        "profile": "quick",
        "status": worst,
        "exit_code": {"PASS": 0, "WARN": 0, "FAIL": 3, "ERROR": 4}[worst],
        "started_at": started_at,
        "finished_at": started_at,
        "gpus": entries,
        "nodes": [
            {"node": n, "status": worst, "allreduce_busbw_gbps": 400.0}
            for n in sorted({e["node"] for e in entries})
        ],
    }
    (run_dir / "report.json").write_text(json.dumps(report), encoding="utf-8")
    return run_dir
