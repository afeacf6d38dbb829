"""What each materialization's source read (a Parquet source's files with their size and
modification time, or a dataset version's digest), so the next incremental run can tell late
rows of sources without a created timestamp.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("materializations") as batch:
        batch.add_column(sa.Column("source_state", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("materializations") as batch:
        batch.drop_column("source_state")
