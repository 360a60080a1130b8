"""History of runs per card: a SQL database of runs, nodes, cards, verdicts and figures.

A nightly sweep judges each card against its SKU and its peers; the history judges it against
its own past. :mod:`~burnin.history.db` opens the database (SQLite in the user's data directory
by default, PostgreSQL by URL) and migrates its schema with the Alembic scripts shipped in
``migrations/``; :mod:`~burnin.history.ingest` adds a finished run directory once (keyed by run
id); :mod:`~burnin.history.trends` finds cards that moved against their own past, lemons, and the
baseline the ``regression`` check reads; :mod:`~burnin.history.actions` drains or taints a node
whose cards failed (opt-in); :mod:`~burnin.history.prom` gives the Prometheus series. Nothing
here imports torch or pynvml, and SQLAlchemy is imported only by the modules that talk to the
database, so ``burnin --help`` stays light.
"""

from __future__ import annotations

from burnin.errors import InputError


class HistoryError(InputError):
    """The history database cannot be opened, migrated or written (exit 2)."""
