"""Alerts: rules over monitor results, and the alerts they open and resolve.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", ID, nullable=False),
        sa.Column("monitor_id", ID, nullable=False),
        sa.Column("expression", sa.String(300), nullable=False),
        sa.Column("cooldown_seconds", sa.Integer, nullable=False),
        sa.Column("notify", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.ForeignKeyConstraint(
            ["monitor_id"], ["monitors.id"], name="fk_alert_rules_monitor_id_monitors"
        ),
        sa.UniqueConstraint(
            "monitor_id", "expression", name="uq_alert_rules_monitor_id_expression"
        ),
    )
    op.create_table(
        "alerts",
        sa.Column("id", ID, nullable=False),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("result_id", ID, nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("closed_at", UTCDateTime, nullable=True),
        sa.Column("deliveries", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["alert_rules.id"], name="fk_alerts_rule_id_alert_rules"
        ),
    )
    op.create_index("ix_alerts_rule_id_status", "alerts", ["rule_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_alerts_rule_id_status", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
