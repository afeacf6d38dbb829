"""Rate limits kept in the metadata store, so that every process of a team server (its
workers, and its hosts behind a balancer) spends one budget per client address.

A hit is a row (key, time); a key past its budget within the window is refused until its
oldest hit in the window ages out. Only failures and rare actions count (failed sign-ins,
token creations), so the rows stay few: a refused hit is not recorded, and each hit removes
the rows older than the window.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa

from conveyor.core.clock import utcnow
from conveyor.core.errors import RateLimitedError
from conveyor.store.metadata.schema import rate_hits
from conveyor.store.metadata.store import MetadataStore

__all__ = ["RateLimiter"]

_KEY_MAX = 200


class RateLimiter:
    """At most ``limit`` hits per key (a client address) in ``window`` seconds, counted in
    ``metadata`` across every process that shares it.

    :meth:`spend` is exact under concurrency: the hits of one key are counted one at a
    time (SQLite runs one writer at a time; on PostgreSQL each takes a lock on its key for
    its transaction), so of any number of simultaneous hits exactly the budget's remainder
    pass.
    """

    def __init__(self, metadata: MetadataStore, limit: int = 20, window: float = 60.0) -> None:
        self.metadata = metadata
        self.limit = limit
        self.window = timedelta(seconds=window)

    def spend(self, key: str) -> int:
        """Count a hit of ``key`` and return its id (see :meth:`refund`); raise
        RateLimitedError, counting nothing, when the window already holds ``limit`` hits."""
        key = key[:_KEY_MAX]
        now = utcnow()
        with self.metadata.transaction() as uow:
            conn = uow.conn
            if conn.dialect.name == "postgresql":
                # Each statement must see the hits committed before it, whatever the
                # server's default isolation: a snapshot taken before the lock is granted
                # would miss the hits of those who held it meanwhile.
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                self._refuse_when_spent(conn, key, now)  # a flood waits for no lock
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id(key))))
            conn.execute(rate_hits.delete().where(rate_hits.c.at <= now - self.window))
            self._refuse_when_spent(conn, key, now)  # raised inside: nothing is recorded
            return int(
                conn.execute(
                    rate_hits.insert().values(key=key, at=now).returning(rate_hits.c.id)
                ).scalar_one()
            )

    def _refuse_when_spent(self, conn: sa.Connection, key: str, now: datetime) -> None:
        count, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(rate_hits.c.at)).where(
                rate_hits.c.key == key, rate_hits.c.at > now - self.window
            )
        ).one()
        if count >= self.limit:
            ages_out = (oldest or now) + self.window  # no hit at all: a budget of 0
            wait = max(int((ages_out - now).total_seconds()) + 1, 1)
            raise RateLimitedError(
                f"Too many failed attempts from this address; retry in {wait} s."
            )

    def refund(self, hit_id: int) -> None:
        """Take back a hit :meth:`spend` counted (an attempt that turned out to succeed)."""
        with self.metadata.transaction() as uow:
            uow.conn.execute(rate_hits.delete().where(rate_hits.c.id == hit_id))


def _lock_id(key: str) -> int:
    """The PostgreSQL advisory lock of ``key``'s hits: 64 bits of a hash of it."""
    digest = hashlib.sha256(b"conveyor.ratelimit\0" + key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
