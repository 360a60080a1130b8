"""Open the history database: resolve the URL, connect, migrate the schema to the current version.

The default is a SQLite file in the user's data directory (``platformdirs``); ``--history URL``
names another file (``sqlite:///path``) or a PostgreSQL server (``postgresql+psycopg://``). The
schema is created and upgraded by the Alembic revisions in ``migrations/versions`` (package data),
run programmatically on every open, so a database written by an older burnin is brought up to
date in place and keeps every row. Every failure (a bad URL, a server that does not answer, a
file that is not a database) becomes a :class:`~burnin.history.HistoryError` naming the URL's
host and the reason, with the password masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from burnin.history import HistoryError

MIGRATIONS = Path(__file__).parent / "migrations"


def default_url() -> str:
    """``sqlite:///<user data dir>/burnin/history.sqlite`` (the directory is made on open)."""
    from platformdirs import user_data_dir

    return f"sqlite:///{Path(user_data_dir('burnin', appauthor=False)) / 'history.sqlite'}"


def describe(url: str) -> str:
    """The URL as a person may see it: password masked, host (or file) named."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # an unparsable URL is shown as given, it holds no parsed password
        return url
    where = parsed.host or parsed.database or "?"
    return f"{parsed.render_as_string(hide_password=True)} (host {where})"


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(url: str | None = None, migrate: bool = True) -> Any:
    """An SQLAlchemy Engine on ``url`` (default: :func:`default_url`), schema at head.

    Raises:
        HistoryError: the URL is malformed, the driver is missing, the server cannot be
            reached, the file is not a database, or a migration failed.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    url = url or default_url()
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise HistoryError(f"history database {url!r}: not a database URL ({exc})") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        try:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"history database {describe(url)}: {exc}") from None
    try:
        args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
        engine = create_engine(parsed, connect_args=args)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (ImportError, SQLAlchemyError) as exc:
        raise HistoryError(f"history database {describe(url)}: {_reason(exc)}") from None
    if migrate:
        upgrade(engine, "head")
    return engine


def upgrade(engine: Any, revision: str = "head") -> None:
    """Run the shipped Alembic migrations up to ``revision`` on ``engine``."""
    from alembic import command
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    except SQLAlchemyError as exc:
        where = describe(engine.url.render_as_string(hide_password=False))
        raise HistoryError(f"history database {where}: migration failed ({_reason(exc)})") from None


def current_revision(engine: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _alembic_config(conn: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg
