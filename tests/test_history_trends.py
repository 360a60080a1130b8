"""History on real simulated sweeps: trends, idempotent ingest, migration, regression verdicts.

Two sweeps of the same 16-GPU fleet a week apart (tests/history_helpers.py): in the second,
node-00 gpu3 is 8 % slower and node-01 gpu5's corrected ECC grows. Every test runs on SQLite and
on a real PostgreSQL server.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from history_helpers import postgres_server, simulated_sweeps

from burnin.cli import cli

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return simulated_sweeps(tmp_path_factory.mktemp("sweeps"))


@pytest.fixture(scope="session")
def pg_server():
    yield from postgres_server()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite'}"
    return request.getfixturevalue("pg_server").new_database()


def _serial(run_dir: Path, node: str, index: int) -> str:
    report = json.loads((run_dir / "report.json").read_text())
    return next(g["serial"] for g in report["gpus"] if (g["node"], g["index"]) == (node, index))


def _history(url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["history", "--db", url, *args])


def _counts(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from burnin.history import tables as t
    from burnin.history.db import connect

    engine = connect(url)
    with engine.connect() as conn:
        out = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in t.metadata.sorted_tables
        }
    engine.dispose()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_trends_name_exactly_the_slow_and_the_ecc_card(db_url: str, sweeps: tuple) -> None:
    week1, week2 = sweeps
    assert _history(db_url, "ingest", str(week1), str(week2)).exit_code == 0
    result = _history(db_url, "trends")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if not line.startswith("#")]
    found = {(r[0], r[1], r[2]) for r in rows}
    assert found == {
        (_serial(week2, "node-00", 3), "node-00/gpu3", "matmul_tflops"),
        (_serial(week2, "node-01", 5), "node-01/gpu5", "ecc_sbe_per_h"),
    }
    slow = next(r for r in rows if r[2] == "matmul_tflops")
    assert -9.0 < float(slow[5].rstrip("%")) < -7.0  # the 8 % the scenario took away
    assert float(slow[6]) < 0  # slope per day, over the week
    assert slow[7] == f"{week1.name},{week2.name}"  # the runs the trend rests on


@pytest.mark.slow
def test_trends_print_the_same_on_sqlite_and_postgresql(
    sweeps: tuple, tmp_path: Path, pg_server: Any
) -> None:
    outputs = []
    for url in (f"sqlite:///{tmp_path / 'h.sqlite'}", pg_server.new_database()):
        assert _history(url, "ingest", *map(str, sweeps)).exit_code == 0
        outputs.append(_history(url, "trends").output)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 3  # header and the two cards


@pytest.mark.slow
@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_ingesting_a_run_twice_adds_nothing(db_url: str, sweeps: tuple) -> None:
    first = _history(db_url, "ingest", str(sweeps[0]))
    assert "added, 16 card(s)" in first.output
    before = _counts(db_url)
    again = _history(db_url, "ingest", str(sweeps[0]))
    assert again.exit_code == 0 and "already in the history" in again.output
    assert _counts(db_url) == before
    assert before["runs"] == 1 and before["nodes"] == 2 and before["card_runs"] == 16


@pytest.mark.slow
@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_migration_from_the_first_version_keeps_every_row(db_url: str, sweeps: tuple) -> None:
    """A 0001 database holding both sweeps, upgraded to head, has every row and the new
    columns filled as the ingest fills them."""
    import sqlalchemy as sa

    from burnin.history.db import connect, current_revision, upgrade
    from burnin.history.ingest import ingest_run

    reference = connect("sqlite://")  # the same runs ingested at head, in memory
    for run in sweeps:
        ingest_run(reference, run)
    old = connect(db_url, migrate=False)
    upgrade(old, "0001")
    assert current_revision(old) == "0001"
    v1 = sa.MetaData()
    v1.reflect(old)
    assert "started_at" not in v1.tables["card_runs"].c
    head = sa.MetaData()
    head.reflect(reference)
    with reference.connect() as src, old.begin() as dst:
        for name in ("runs", "nodes", "cards", "card_runs", "verdicts"):
            cols = [c.name for c in v1.tables[name].c]
            rows = [
                dict(r._mapping)
                for r in src.execute(sa.select(*[head.tables[name].c[c] for c in cols]))
            ]
            dst.execute(v1.tables[name].insert(), rows)
    upgrade(old, "head")
    assert current_revision(old) == "0002"
    with reference.connect() as a, old.connect() as b:
        for name in ("runs", "nodes", "cards", "verdicts"):
            count = sa.text(f"SELECT count(*) FROM {name}")
            assert a.execute(count).scalar_one() == b.execute(count).scalar_one() > 0
        query = sa.text(
            "SELECT id, started_at, temp_c_per_kw, matmul_tflops FROM card_runs ORDER BY id"
        )
        want, got = a.execute(query).all(), b.execute(query).all()
    assert len(want) == len(got) == 32
    for w, g in zip(want, got, strict=True):
        assert w.id == g.id and w.matmul_tflops == g.matmul_tflops
        assert g.started_at is not None
        assert g.temp_c_per_kw == pytest.approx(w.temp_c_per_kw, rel=1e-5)
    reference.dispose()
    old.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_a_run_judged_against_the_history_warns_on_exactly_the_two_cards(
    db_url: str, sweeps: tuple, tmp_path: Path
) -> None:
    from burnin.history.hook import after_run

    week1, week2 = sweeps
    assert _history(db_url, "ingest", str(week1)).exit_code == 0
    run = shutil.copytree(week2, tmp_path / week2.name)
    done = after_run(run, db_url)
    assert done.ingested.added and done.context["exit_code"] == 0  # WARN only
    warned = {
        (g["node"], g["index"]): v
        for g in done.context["gpus"]
        for v in g["verdicts"]
        if v["check"] == "regression" and v["status"] == "WARN"
    }
    assert set(warned) == {("node-00", 3), ("node-01", 5)}
    assert warned[("node-00", 3)]["unit"] == "TFLOP/s"
    assert "own median" in warned[("node-00", 3)]["message"]
    assert warned[("node-01", 5)]["unit"] == "errors/h"
    report = json.loads((run / "report.json").read_text())
    assert report["history"]["cards"] and report["checks"]["regression"] == {"PASS": 14, "WARN": 2}
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a dev dependency")
    schema = Path(__file__).parents[1] / "reports" / "schema" / "report-1.schema.json"
    jsonschema.validate(report, json.loads(schema.read_text()))
    prom = (run / "burnin.prom").read_text()
    flagged = [line for line in prom.splitlines() if line.startswith("burnin_gpu_regression{")]
    assert len(flagged) == 16
    assert sorted(line.split('gpu="')[1][0] for line in flagged if line.endswith(" 1.0")) == [
        "3",
        "5",
    ]
    days = [line for line in prom.splitlines() if line.startswith("burnin_gpu_days_since_pass{")]
    assert len(days) == 16
    # a WARN card did not pass this run: its last PASS is the sweep a week before
    assert sorted(line.rsplit(" ", 1)[1] for line in days) == ["0.0"] * 14 + ["7.0"] * 2


@pytest.mark.slow
def test_two_hosts_bringing_the_same_new_card_both_land(
    pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host B commits a card while host A's transaction is adding the same card: A's insert
    hits the unique key, rolls back whole and lands on its retry, reusing B's card."""
    from history_helpers import write_report_run

    from burnin.history import ingest
    from burnin.history.db import connect

    url = pg_server.new_database()
    engine_a, engine_b = connect(url), connect(url)
    run_a = write_report_run(tmp_path, "run-a", "2026-01-01T00:00:00Z", [{"serial": "S-9"}])
    run_b = write_report_run(tmp_path, "run-b", "2026-01-02T00:00:00Z", [{"serial": "S-9"}])
    real, raced = ingest._card_id, []

    def card_id_with_race(conn: Any, gpu: dict[str, Any]) -> int:
        if not raced:
            raced.append(ingest.ingest_run(engine_b, run_b))  # B commits first
        return real(conn, gpu)

    # A looked the card up before B committed: the lookup comes back empty once.
    lookups = iter([None])

    def insert_blind(conn: Any, gpu: dict[str, Any]) -> int:
        if next(lookups, "done") is None:
            card_id_with_race(conn, gpu)  # B commits now; A still inserts the card blind
            from burnin.history import tables as t

            row = conn.execute(t.cards.insert().values(card_key=ingest.card_key(gpu)))
            return int(row.inserted_primary_key[0])
        return real(conn, gpu)

    monkeypatch.setattr(ingest, "_card_id", insert_blind)
    done = ingest.ingest_run(engine_a, run_a)
    assert raced[0].added and done.added
    counts = _counts(url)
    assert (counts["runs"], counts["cards"], counts["card_runs"]) == (2, 1, 2)
    engine_a.dispose()
    engine_b.dispose()
