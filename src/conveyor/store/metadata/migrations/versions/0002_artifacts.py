"""Artifacts: one row per stored content digest, and the named links that keep them alive.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_artifacts"),
    )
    op.create_table(
        "artifact_links",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("owner_kind", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifact_links"),
        sa.ForeignKeyConstraint(
            ["digest"], ["artifacts.digest"], name="fk_artifact_links_digest_artifacts"
        ),
        sa.UniqueConstraint(
            "owner_kind", "owner_id", "name", name="uq_artifact_links_owner_kind_owner_id_name"
        ),
    )
    op.create_index("ix_artifact_links_digest", "artifact_links", ["digest"])


def downgrade() -> None:
    op.drop_table("artifact_links")
    op.drop_table("artifacts")
