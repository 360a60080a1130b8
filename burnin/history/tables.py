"""The history schema at its current migration (``migrations/versions``), as SQLAlchemy Core tables.

The migrations create and change the database; these table objects only describe the head
revision for the queries. A column added here needs a new revision that adds it, and
``tests/test_history_db.py`` checks that the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
TZ = sa.DateTime(timezone=True)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(200), primary_key=True),
    sa.Column("profile", sa.String(200)),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("exit_code", sa.Integer, nullable=False),
    sa.Column("started_at", TZ, nullable=False),
    sa.Column("finished_at", TZ),
    sa.Column("ingested_at", TZ, nullable=False),
    sa.Column("source", sa.Text),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(200), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("allreduce_busbw_gbps", sa.Float),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("card_key", sa.String(400), nullable=False, unique=True),
    sa.Column("serial", sa.String(200)),
    sa.Column("uuid", sa.String(200)),
    sa.Column("sku", sa.String(100)),
)

card_runs = sa.Table(
    "card_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(200), sa.ForeignKey("runs.run_id"), nullable=False),
    sa.Column("card_id", sa.Integer, sa.ForeignKey("cards.id"), nullable=False),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("gpu_index", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("matmul_tflops", sa.Float),
    sa.Column("membw_gbps", sa.Float),
    sa.Column("busbw_gbps", sa.Float),
    sa.Column("max_temp_c", sa.Float),
    sa.Column("load_temp_c", sa.Float),
    sa.Column("load_power_w", sa.Float),
    sa.Column("ecc_sbe_per_h", sa.Float),
    sa.Column("energy_kwh", sa.Float),
    sa.Column("metrics_json", sa.Text),
    sa.Column("started_at", TZ),  # revision 0002
    sa.Column("temp_c_per_kw", sa.Float),  # revision 0002
)

verdicts = sa.Table(
    "verdicts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("card_run_id", sa.Integer, sa.ForeignKey("card_runs.id"), nullable=False),
    sa.Column("check_id", sa.String(50), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("observed", sa.Text),
    sa.Column("limit_value", sa.Text),
    sa.Column("unit", sa.String(50)),
    sa.Column("message", sa.Text),
    sa.Column("action", sa.String(50)),
)
