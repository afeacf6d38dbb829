"""SQLAlchemy engines for the metadata store: SQLite tuned for concurrency, PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from conveyor.core.errors import BackendUnavailableError, InvalidArgumentError
from conveyor.core.uris import redact_uri

__all__ = ["BUSY_TIMEOUT_S", "create_engine", "describe_url", "sqlite_path"]

#: How long a SQLite writer waits for another writer before giving up.
BUSY_TIMEOUT_S = 60.0
#: Execution option that asks for a write transaction (SQLite: BEGIN IMMEDIATE).
WRITE = "conveyor_write"


def _parse(uri: str) -> URL:
    if uri.startswith("sqlite:///") and "?" not in uri:
        # The common case, without SQLAlchemy's general pattern (compiled on first use in
        # every process): what follows the third slash is the file, percent-decoded.
        return URL.create("sqlite", database=unquote(uri[len("sqlite:///") :]))
    try:
        return make_url(uri)
    except (sa.exc.ArgumentError, ValueError) as e:
        raise InvalidArgumentError(
            f"The metadata store URI {redact_uri(uri)!r} cannot be parsed ({e}).",
            hint="Use sqlite:///path/to/conveyor.db or postgresql://user@host:5432/dbname.",
        ) from e


def describe_url(uri: str) -> str:
    """Return ``uri`` with any password hidden, safe to print and log."""
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return redact_uri(uri)


def sqlite_path(uri: str) -> Path | None:
    """Return the database file of a SQLite URI, or None for an in-memory database."""
    url = _parse(uri)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def create_engine(uri: str) -> Engine:
    """Create an engine for ``uri``; the database is not contacted yet."""
    url = _parse(uri)
    if url.drivername == "postgres":  # the alias the scheme list names (libpq takes it too)
        url = url.set(drivername="postgresql")
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        try:
            return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        except ImportError as e:
            raise InvalidArgumentError(
                f"The metadata store {describe_url(uri)!r} needs the PostgreSQL driver, "
                f"which is not installed ({e.name or e}).",
                hint="pip install 'conveyor-mlops[postgres]'",
            ) from e
    raise InvalidArgumentError(
        f"The metadata store does not support {backend!r} databases.",
        hint="Use sqlite:/// or postgresql://.",
    )


def _sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
    }
    if in_memory:
        kwargs["poolclass"] = StaticPool
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not pysqlite, decide how transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if not in_memory:
            # WAL is a property of the file: set it once (under the first-open lock, see
            # MetadataStore.open); switching modes ignores the busy timeout.
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA case_sensitive_like = ON")  # LIKE as on PostgreSQL; ILIKE ignores case
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A write transaction takes the write lock up front, so two writers queue on the busy
        # timeout instead of failing when a reader tries to upgrade its lock.
        if conn.get_execution_options().get(WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def unavailable(uri: str, error: BaseException) -> BackendUnavailableError:
    """Return the error to raise when the database of ``uri`` cannot be reached."""
    url = _parse(uri)
    if url.get_backend_name() == "sqlite":
        where = f"the SQLite database {url.database}"
        hint = "Check that the folder exists and is writable."
    else:
        where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
        hint = "Check that the server is running and the URI (host, port, user, database)."
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return BackendUnavailableError(f"Cannot reach {where}: {reason}.", hint=hint)
