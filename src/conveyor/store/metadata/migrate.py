"""Applying migrations: once, under a lock, so that concurrent first opens all succeed."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from conveyor.core.errors import ConflictError

__all__ = ["HEAD", "REVISIONS", "current_revision", "upgrade"]

#: Every revision this version of Conveyor knows, oldest first. A test keeps it equal to the
#: scripts in ``migrations/versions`` so opening an up-to-date store never imports Alembic.
REVISIONS: tuple[str, ...] = (
    "0001",
    "0002",
    "0003",
    "0004",
    "0005",
    "0006",
    "0007",
    "0008",
    "0009",
    "0010",
    "0011",
    "0012",
    "0013",
    "0014",
    "0015",
    "0016",
)
HEAD = REVISIONS[-1]
_MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant key for pg_advisory_xact_lock: "conveyor" in ASCII, truncated to int64.
_PG_LOCK_KEY = 0x636F6E7665796F72


def current_revision(conn: sa.Connection) -> str | None:
    """Return the store's revision, or None for an empty database."""
    if conn.dialect.name == "sqlite":  # asked by every process that opens a store
        found = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).first()
        if found is None:
            return None
    elif not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def check_known(revision: str | None) -> None:
    """Raise if ``revision`` was written by a newer Conveyor than this one."""
    if revision is not None and revision not in REVISIONS:
        raise ConflictError(
            f"The metadata store is at revision {revision!r}, made by a newer Conveyor "
            f"(this one knows up to {HEAD!r}).",
            hint="Upgrade Conveyor: pip install -U conveyor-mlops.",
        )


def _alembic_config(conn: sa.Connection):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def upgrade(conn: sa.Connection, target: str = "head") -> list[str]:
    """Upgrade the store to ``target`` inside the transaction open on ``conn``.

    The caller holds a write transaction (SQLite: ``BEGIN IMMEDIATE``); on PostgreSQL an
    advisory lock is taken here. Either way a second process waits, then finds the store
    already at the target and applies nothing. Returns the revisions applied.
    """
    from alembic import command

    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    before = current_revision(conn)
    check_known(before)
    command.upgrade(_alembic_config(conn), target)
    after = current_revision(conn)
    start = REVISIONS.index(before) + 1 if before else 0
    end = REVISIONS.index(after) + 1 if after else 0
    return list(REVISIONS[start:end])


def script_revisions() -> list[str]:
    """Return the revisions of the shipped migration scripts, oldest first (for tests)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    return [s.revision for s in reversed(list(script.walk_revisions()))]
