"""Trend figures: each card result carries its run's start and its temperature per kW.

Trends read a card's results in time order and compare temperature at the same power, so
``card_runs`` gains ``started_at`` (copied from its run) and ``temp_c_per_kw`` (load
temperature over load power, computed from the two figures version 0001 already stored), and
an index on ``(card_id, started_at)``. Existing rows are filled in place; none is dropped.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("card_runs") as batch:
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("temp_c_per_kw", sa.Float))
    op.execute(
        "UPDATE card_runs SET started_at = "
        "(SELECT runs.started_at FROM runs WHERE runs.run_id = card_runs.run_id)"
    )
    op.execute(
        "UPDATE card_runs SET temp_c_per_kw = load_temp_c * 1000.0 / load_power_w "
        "WHERE load_temp_c IS NOT NULL AND load_power_w > 0"
    )
    op.create_index("ix_card_runs_card_time", "card_runs", ["card_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_card_runs_card_time", table_name="card_runs")
    with op.batch_alter_table("card_runs") as batch:
        batch.drop_column("temp_c_per_kw")
        batch.drop_column("started_at")
