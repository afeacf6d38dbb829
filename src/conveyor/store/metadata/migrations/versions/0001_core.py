"""Core tables: projects, append-only audit events, lineage edges.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.metadata.types import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(26)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("object_kind", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("before", JSONType, nullable=True),
        sa.Column("after", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_audit_events_project_id_projects"
        ),
    )
    op.create_index(
        "ix_audit_events_object_kind_object_id", "audit_events", ["object_kind", "object_id"]
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"])
    _make_audit_append_only()

    op.create_table(
        "lineage_edges",
        sa.Column("id", ID, nullable=False),
        sa.Column("project_id", ID, nullable=True),
        sa.Column("src_kind", sa.String(64), nullable=False),
        sa.Column("src_id", sa.String(200), nullable=False),
        sa.Column("dst_kind", sa.String(64), nullable=False),
        sa.Column("dst_id", sa.String(200), nullable=False),
        sa.Column("relation", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_edges"),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_lineage_edges_project_id_projects"
        ),
        sa.UniqueConstraint(
            "src_kind",
            "src_id",
            "dst_kind",
            "dst_id",
            "relation",
            name="uq_lineage_edges_src_kind_src_id_dst_kind_dst_id_relation",
        ),
    )
    op.create_index("ix_lineage_edges_dst_kind_dst_id", "lineage_edges", ["dst_kind", "dst_id"])


def _make_audit_append_only() -> None:
    """Refuse UPDATE and DELETE on audit_events in the database itself, not only in code."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION conveyor_audit_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_events is append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION conveyor_audit_append_only()"
        )


def downgrade() -> None:
    op.drop_table("lineage_edges")
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS conveyor_audit_append_only()")
    op.drop_table("audit_events")
    op.drop_table("projects")
