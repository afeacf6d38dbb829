"""Monitors: what to watch on a deployment's prediction log, and each run's results.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("reference", sa.String(300), nullable=False),
        sa.Column("window_seconds", sa.Integer, nullable=False),
        sa.Column("schedule", sa.String(100), nullable=True),
        sa.Column("next_run_at", UTCDateTime, nullable=True),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitors"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_monitors_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_monitors_project_id_name"),
    )
    op.create_table(
        "monitor_results",
        sa.Column("id", ID, nullable=False),
        sa.Column("monitor_id", ID, nullable=False),
        sa.Column("start_at", UTCDateTime, nullable=False),
        sa.Column("end_at", UTCDateTime, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("labelled_rows", sa.BigInteger, nullable=False),
        sa.Column("dataset_drifted", sa.Boolean, nullable=True),
        sa.Column("share_drifted", sa.Float, nullable=True),
        sa.Column("result", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_results"),
        sa.ForeignKeyConstraint(
            ["monitor_id"], ["monitors.id"], name="fk_monitor_results_monitor_id_monitors"
        ),
    )
    op.create_index(
        "ix_monitor_results_monitor_id_end_at", "monitor_results", ["monitor_id", "end_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_monitor_results_monitor_id_end_at", table_name="monitor_results")
    op.drop_table("monitor_results")
    op.drop_table("monitors")
