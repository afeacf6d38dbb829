"""Model registry: versions, aliases and history, promotions, evaluations, webhook deliveries.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("protected_aliases", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_models_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_models_project_id_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", ID, nullable=False),
        sa.Column("model_id", ID, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("flavor", sa.String(64), nullable=False),
        sa.Column("signature", JSONType, nullable=True),
        sa.Column("requirements", JSONType, nullable=False),
        sa.Column("info", JSONType, nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="ready"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_versions_model_id_models"
        ),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    )
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_aliases",
        sa.Column("model_id", ID, nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version_id", ID, nullable=False),
        sa.Column("set_at", UTCDateTime, nullable=False),
        sa.Column("set_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_aliases_model_id_models"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_model_aliases_version_id_model_versions"
        ),
    )
    op.create_table(
        "model_alias_history",
        sa.Column("id", ID, nullable=False),
        sa.Column("model_id", ID, nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version_id", ID, nullable=True),
        sa.Column("previous_version_id", ID, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("request_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_model_alias_history"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_alias_history_model_id_models"
        ),
    )
    op.create_index(
        "ix_model_alias_history_model_id_alias_at",
        "model_alias_history",
        ["model_id", "alias", "at"],
    )
    op.create_table(
        "promotion_requests",
        sa.Column("id", ID, nullable=False),
        sa.Column("model_id", ID, nullable=False),
        sa.Column("version_id", ID, nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("holder_version_id", ID, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("checks", JSONType, nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", UTCDateTime, nullable=True),
        sa.Column("decision_comment", sa.Text, nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_promotion_requests"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_promotion_requests_model_id_models"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name="fk_promotion_requests_version_id_model_versions",
        ),
    )
    op.create_index(
        "ix_promotion_requests_model_id_status", "promotion_requests", ["model_id", "status"]
    )
    op.create_table(
        "model_evaluations",
        sa.Column("id", ID, nullable=False),
        sa.Column("version_id", ID, nullable=False),
        sa.Column("dataset_version_id", ID, nullable=True),
        sa.Column("dataset", sa.String(250), nullable=False),
        sa.Column("target", sa.String(250), nullable=False),
        sa.Column("task", sa.String(32), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("slices", JSONType, nullable=False),
        sa.Column("fairness", JSONType, nullable=False),
        sa.Column("importance", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_evaluations"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name="fk_model_evaluations_version_id_model_versions",
        ),
    )
    op.create_index(
        "ix_model_evaluations_version_id_dataset_version_id",
        "model_evaluations",
        ["version_id", "dataset_version_id"],
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("response_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
    )
    op.create_index(
        "ix_webhook_deliveries_project_id_finished_at",
        "webhook_deliveries",
        ["project_id", "finished_at"],
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("model_evaluations")
    op.drop_table("promotion_requests")
    op.drop_table("model_alias_history")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
