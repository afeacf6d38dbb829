"""Experiment tracking: experiments, runs, params, tags, metric points and latest values.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_experiments_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_experiments_project_id_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("experiment_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", UTCDateTime, nullable=False),
        sa.Column("end_time", UTCDateTime, nullable=True),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("git_branch", sa.String(250), nullable=True),
        sa.Column("git_dirty", sa.Boolean, nullable=True),
        sa.Column("command", sa.Text, nullable=False, server_default=""),
        sa.Column("python_version", sa.String(50), nullable=False, server_default=""),
        sa.Column("host", sa.String(250), nullable=False, server_default=""),
        sa.Column("environment_digest", sa.String(64), nullable=True),
        sa.Column("deleted_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_runs_project_id_projects"
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name="fk_runs_experiment_id_experiments"
        ),
    )
    op.create_index("ix_runs_experiment_id_start_time", "runs", ["experiment_id", "start_time"])
    op.create_index("ix_runs_parent_id", "runs", ["parent_id"])
    for table in ("params", "tags"):
        op.create_table(
            table,
            sa.Column("run_id", ID, nullable=False),
            sa.Column("key", sa.String(250), nullable=False),
            sa.Column("value", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("run_id", "key", name=f"pk_{table}"),
            sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs"),
            sqlite_with_rowid=False,
        )
        op.create_index(f"ix_{table}_key_value_run_id", table, ["key", "value", "run_id"])
    op.create_table(
        "metrics",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metrics_run_id_runs"),
    )
    op.create_index(
        "ix_metrics_run_id_key_step_timestamp_ms_value",
        "metrics",
        ["run_id", "key", "step", "timestamp_ms", "value"],
        unique=True,
    )
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_latest_metrics"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_latest_metrics_run_id_runs"),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_latest_metrics_key_value_run_id", "latest_metrics", ["key", "value", "run_id"]
    )


def downgrade() -> None:
    for table in ("latest_metrics", "metrics", "tags", "params", "runs", "experiments"):
        op.drop_table(table)
