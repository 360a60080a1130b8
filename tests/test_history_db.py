"""Opening the history database: default location, URL errors (exit 2), schema at head."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from history_helpers import DATA

from burnin.cli import cli
from burnin.history import HistoryError
from burnin.history.db import connect, current_revision, default_url, describe


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: nothing listens there


def test_default_url_is_a_sqlite_file_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = default_url()
    assert url == f"sqlite:///{tmp_path / 'data' / 'burnin' / 'history.sqlite'}"
    engine = connect()
    assert current_revision(engine) == "0002"
    assert (tmp_path / "data" / "burnin" / "history.sqlite").is_file()
    engine.dispose()


def test_schema_at_head_matches_the_tables_the_queries_use() -> None:
    import sqlalchemy as sa

    from burnin.history import tables

    engine = connect("sqlite://")
    found = sa.MetaData()
    found.reflect(engine)
    for table in tables.metadata.sorted_tables:
        assert {c.name for c in found.tables[table.name].c} == {c.name for c in table.c}
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("card_runs")}
    assert "ix_card_runs_card_time" in indexes
    engine.dispose()


def test_describe_masks_the_password_and_names_the_host() -> None:
    text = describe("postgresql+psycopg://fleet:s3cret@db.example:5432/burnin")
    assert "s3cret" not in text and "db.example" in text and "***" in text


def _corrupt(tmp_path: Path) -> str:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not a database file, just some text " * 100)
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("make_url", "host", "reason"),
    [
        (_corrupt, "history.sqlite", "not a database"),
        (
            lambda _: f"postgresql+psycopg://fleet:pw@127.0.0.1:{_closed_port()}/burnin",
            "host 127.0.0.1",
            "refused",
        ),
        (lambda _: "nosuchdb://x", "nosuchdb://x", "Can't load plugin"),
        (lambda _: "not a url at all", "not a url at all", "not a database URL"),
    ],
    ids=["corrupt-file", "unreachable-server", "unknown-dialect", "malformed"],
)
def test_bad_database_is_exit_2_with_host_and_reason(
    make_url, host: str, reason: str, tmp_path: Path
) -> None:
    url = make_url(tmp_path)
    with pytest.raises(HistoryError) as caught:
        connect(url).dispose()
    assert host in str(caught.value) and reason in str(caught.value)
    assert "pw@" not in str(caught.value)
    result = CliRunner().invoke(cli, ["history", "--db", url, "list"])
    assert result.exit_code == 2
    assert host in result.output and reason in result.output


@pytest.mark.slow
def test_run_with_an_unreachable_history_still_writes_its_reports(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://fleet@127.0.0.1:{_closed_port()}/burnin"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--simulate",
            str(DATA / "failing-node.toml"),
            "--duration",
            "5s",
            "--out",
            str(tmp_path),
            "--quiet",
            "--history",
            url,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "127.0.0.1" in result.output and "refused" in result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    for name in ("report.html", "report.json", "junit.xml", "burnin.prom"):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.slow
def test_run_with_bare_history_uses_the_default_file_and_judges_new_cards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--simulate",
            str(DATA / "failing-node.toml"),
            "--duration",
            "5s",
            "--out",
            str(out),
            "--quiet",
            "--history",
        ],
    )
    assert result.exit_code == 3, result.output  # the scenario's wrong-answer card
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    report = json.loads((run_dir / "report.json").read_text())
    regression = [v for g in report["gpus"] for v in g["verdicts"] if v["check"] == "regression"]
    assert [v["status"] for v in regression] == ["SKIP", "SKIP"]  # first sweep: no past yet
    assert "no past run of this card" in regression[0]["message"]
    verdicts = (run_dir / "verdicts.jsonl").read_text()
    assert '"check": "regression"' in verdicts or '"check":"regression"' in verdicts
    listed = CliRunner().invoke(cli, ["history", "list"], env={"BURNIN_HISTORY": ""})
    assert listed.exit_code == 0 and run_dir.name in listed.output
    assert (tmp_path / "data" / "burnin" / "history.sqlite").is_file()
