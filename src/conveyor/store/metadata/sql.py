"""Small SQL helpers that differ by dialect, written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["insert_ignore"]


def insert_ignore(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    conflict_columns: Sequence[str],
) -> int:
    """Insert ``rows``, skipping any that collide on ``conflict_columns``; return rows inserted."""
    if not rows:
        return 0
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    key = next(iter(table.primary_key.columns))
    inserted = 0
    for row in rows:
        # RETURNING counts reliably on every driver (rowcount is -1 on some).
        stmt = (
            dialect_insert(table)
            .values(**row)
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(key)
        )
        inserted += len(conn.execute(stmt).all())
    return inserted
