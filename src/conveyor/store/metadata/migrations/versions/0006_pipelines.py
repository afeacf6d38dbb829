"""Pipelines: definitions, runs, step runs with cache keys, schedules and leases.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("entrypoint", sa.String(500), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipelines"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_pipelines_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_pipelines_project_id_name"),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("pipeline_id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("entrypoint", sa.String(500), nullable=False),
        sa.Column("executor", sa.String(200), nullable=False),
        sa.Column("resumed_from", ID, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("coordinator", sa.String(200), nullable=False, server_default=""),  # host:pid
        sa.Column("heartbeat_at", UTCDateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
        sa.ForeignKeyConstraint(
            ["pipeline_id"], ["pipelines.id"], name="fk_pipeline_runs_pipeline_id_pipelines"
        ),
    )
    op.create_index(
        "ix_pipeline_runs_project_id_started_at", "pipeline_runs", ["project_id", "started_at"]
    )
    op.create_index(
        "ix_pipeline_runs_pipeline_id_started_at", "pipeline_runs", ["pipeline_id", "started_at"]
    )
    op.create_table(
        "step_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("pipeline_run_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("step", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=True),
        sa.Column("cached_from", ID, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("upstream", JSONType, nullable=False),
        sa.Column("outputs", JSONType, nullable=True),
        sa.Column("reads", JSONType, nullable=True),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_step_runs"),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_step_runs_pipeline_run_id_pipeline_runs",
        ),
        sa.UniqueConstraint("pipeline_run_id", "name", name="uq_step_runs_pipeline_run_id_name"),
    )
    op.create_index("ix_step_runs_cache_key", "step_runs", ["cache_key"])
    op.create_table(
        "schedules",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("entrypoint", sa.String(500), nullable=False),
        sa.Column("cron", sa.String(100), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("executor", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("catch_up", sa.Integer, nullable=False, server_default="1"),
        sa.Column("next_run_at", UTCDateTime, nullable=False),
        sa.Column("last_run_at", UTCDateTime, nullable=True),
        sa.Column("last_run_id", ID, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_schedules_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_schedules_project_id_name"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    for table in ("leases", "schedules", "step_runs", "pipeline_runs", "pipelines"):
        op.drop_table(table)
