"""Features: entities, feature views with versions, materializations.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "entities",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("keys", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entities"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_entities_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_entities_project_id_name"),
    )
    op.create_table(
        "feature_views",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_views"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_feature_views_project_id_projects"
        ),
        sa.UniqueConstraint("project_id", "name", name="uq_feature_views_project_id_name"),
    )
    op.create_table(
        "feature_view_versions",
        sa.Column("id", ID, nullable=False),
        sa.Column("view_id", ID, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("definition", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_view_versions"),
        sa.ForeignKeyConstraint(
            ["view_id"], ["feature_views.id"], name="fk_feature_view_versions_view_id_feature_views"
        ),
        sa.UniqueConstraint("view_id", "version", name="uq_feature_view_versions_view_id_version"),
    )
    op.create_table(
        "materializations",
        sa.Column("id", ID, nullable=False),
        sa.Column("view_id", ID, nullable=False),
        sa.Column("version_id", ID, nullable=False),
        sa.Column("online_uri", sa.String(500), nullable=False),
        sa.Column("start_at", UTCDateTime, nullable=True),
        sa.Column("end_at", UTCDateTime, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_materializations"),
        sa.ForeignKeyConstraint(
            ["view_id"], ["feature_views.id"], name="fk_materializations_view_id_feature_views"
        ),
    )
    op.create_index("ix_materializations_view_id_end_at", "materializations", ["view_id", "end_at"])


def downgrade() -> None:
    for table in ("materializations", "feature_view_versions", "feature_views", "entities"):
        op.drop_table(table)
