"""The closed loop: continuous-training policies, their executions and events; deferred
promotion requests (approved now, the alias moved later by whoever asked).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.add_column("promotion_requests", sa.Column("deferred", sa.Boolean, nullable=True))
    op.create_table(
        "loop_policies",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("deployment", sa.String(100), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("cursors", JSONType, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loop_policies"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_loop_policies_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_loop_policies_project_id_name"),
    )
    op.create_table(
        "loop_executions",
        sa.Column("id", ID, nullable=False),
        sa.Column("policy_id", ID, nullable=False),
        sa.Column("trigger_key", sa.String(200), nullable=False),
        sa.Column("trigger", JSONType, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("pipeline_run_id", ID, nullable=True),
        sa.Column("previous_run_id", ID, nullable=True),
        sa.Column("candidate", sa.String(200), nullable=True),
        sa.Column("champion", sa.String(200), nullable=True),
        sa.Column("request_id", ID, nullable=True),
        sa.Column("revision", sa.Integer, nullable=True),
        sa.Column("gate", JSONType, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_loop_executions"),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["loop_policies.id"], name="fk_loop_executions_policy_id_loop_policies"
        ),
        sa.UniqueConstraint(
            "policy_id", "trigger_key", name="uq_loop_executions_policy_id_trigger_key"
        ),
    )
    op.create_index("ix_loop_executions_policy_id_state", "loop_executions", ["policy_id", "state"])
    op.create_table(
        "loop_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("policy_id", ID, nullable=False),
        sa.Column("execution_id", ID, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loop_events"),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["loop_policies.id"], name="fk_loop_events_policy_id_loop_policies"
        ),
    )
    op.create_index("ix_loop_events_policy_id_at", "loop_events", ["policy_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_loop_events_policy_id_at", table_name="loop_events")
    op.drop_table("loop_events")
    op.drop_index("ix_loop_executions_policy_id_state", table_name="loop_executions")
    op.drop_table("loop_executions")
    op.drop_table("loop_policies")
    with op.batch_alter_table("promotion_requests") as batch:
        batch.drop_column("deferred")
