"""Initial history schema: runs, nodes, cards, card results per run, verdicts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("profile", sa.String(200)),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(200), sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("node", sa.String(200), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("allreduce_busbw_gbps", sa.Float),
        sa.UniqueConstraint("run_id", "node", name="uq_nodes_run_node"),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("card_key", sa.String(400), nullable=False, unique=True),
        sa.Column("serial", sa.String(200), index=True),
        sa.Column("uuid", sa.String(200), index=True),
        sa.Column("sku", sa.String(100)),
    )
    op.create_table(
        "card_runs",
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
        sa.UniqueConstraint("run_id", "node", "gpu_index", name="uq_card_runs_slot"),
    )
    op.create_table(
        "verdicts",
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


def downgrade() -> None:
    for table in ("verdicts", "card_runs", "cards", "nodes", "runs"):
        op.drop_table(table)
