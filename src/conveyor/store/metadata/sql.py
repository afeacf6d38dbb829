"""Small SQL helpers that differ by dialect, written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from conveyor.store.metadata.store import UnitOfWork

__all__ = ["Prepared", "ensure_named", "insert_ignore", "next_version"]


def dialect_insert(dialect: str) -> Any:
    """The ``insert`` with ON CONFLICT of ``dialect`` (importing only that dialect: loading
    PostgreSQL's costs a SQLite process a tenth of a second)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


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
    insert = dialect_insert(conn.dialect.name)
    key = next(iter(table.primary_key.columns))
    inserted = 0
    for row in rows:
        # RETURNING counts reliably on every driver (rowcount is -1 on some).
        stmt = (
            insert(table)
            .values(**row)
            .on_conflict_do_nothing(index_elements=list(conflict_columns))
            .returning(key)
        )
        inserted += len(conn.execute(stmt).all())
    return inserted


class Prepared:
    """A statement compiled once per dialect and run with many rows through the driver.

    For hot paths whose columns are plain strings and numbers (no type processing needed):
    it skips SQLAlchemy's per-call compilation-cache lookup and result set-up, which cost
    more than SQLite itself for small batches. The SQL text comes from SQLAlchemy's own
    compiler, never from user input; values always travel as bound parameters.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def _for(self, dialect: Any) -> tuple[str, tuple[str, ...] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            order = tuple(compiled.positiontup) if dialect.positional else None
            found = (str(compiled), order)
            self._compiled[dialect.name] = found
        return found

    @staticmethod
    def bind_value(conn: sa.Connection, column: sa.Column[Any], value: Any) -> Any:
        """Return ``value`` as the driver takes it for ``column``: for a typed value that
        every row shares (a timestamp), processed once instead of once per row."""
        process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        return process(value) if process is not None else value

    def executemany(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Execute the statement once per row of ``rows``, in one driver call."""
        if not rows:
            return
        sql, order = self._for(conn.dialect)
        if order is None:
            conn.exec_driver_sql(sql, list(rows))
        else:
            conn.exec_driver_sql(sql, [tuple(row[name] for name in order) for row in rows])

    def column(self, conn: sa.Connection, params: dict[str, Any]) -> list[Any]:
        """Run the statement (a select) with ``params`` in ``conn``'s transaction; return the
        first column of every row as the driver gives it (no per-row result processing)."""
        sql, order = self._for(conn.dialect)
        args = params if order is None else tuple(params[name] for name in order)
        result = conn.exec_driver_sql(sql, args)
        try:
            return [row[0] for row in result.cursor.fetchall()]
        finally:
            result.close()


def ensure_named(uow: UnitOfWork, table: sa.Table, name: str, description: str, kind: str) -> Any:
    """Return the row of ``table`` called ``name`` in the unit's project, creating it once.

    For the named, versioned things (datasets, models): ``table`` has ``id``, ``project_id``,
    ``name``, ``description``, ``created_at`` and ``latest_version``. Two writers creating
    the same name at once both get the one row; only the creator records ``<kind>.create``.
    """
    from conveyor.core import ids
    from conveyor.store.records import ObjectRef

    query = sa.select(table).where(table.c.project_id == uow.project_id, table.c.name == name)
    row = uow.conn.execute(query).first()
    if row is None:
        created = insert_ignore(
            uow.conn,
            table,
            [
                {
                    "id": ids.new_id(),
                    "project_id": uow.project_id,
                    "name": name,
                    "description": description,
                    "created_at": uow.now,
                    "latest_version": 0,
                }
            ],
            conflict_columns=["project_id", "name"],
        )
        row = uow.conn.execute(query).one()
        if created:
            uow.audit(f"{kind}.create", ObjectRef(kind, row.id), after={"name": name})
    return row


def next_version(conn: sa.Connection, table: sa.Table, row_id: str) -> int:
    """Take the next version number of the row ``row_id`` of ``table`` (a dataset, a model).

    The update comes first, so on PostgreSQL it locks the row: two writers adding versions
    of one name at once number them one after the other.
    """
    update = (
        table.update().where(table.c.id == row_id).values(latest_version=table.c.latest_version + 1)
    )
    if conn.dialect.update_returning:  # PostgreSQL; SQLite from 3.35
        return int(conn.execute(update.returning(table.c.latest_version)).scalar_one())
    conn.execute(update)
    return int(
        conn.execute(sa.select(table.c.latest_version).where(table.c.id == row_id)).scalar_one()
    )
