"""Leases: one holder at a time acts for a project (a scheduler, a loop controller).

A lease is a row with a holder and an expiry; taking it succeeds when it is free, expired or
already ours. Holders renew it before each action and stop acting once they lose it, so two
processes run for availability and only one acts.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.clock import utcnow
from conveyor.store.metadata.schema import leases
from conveyor.store.metadata.sql import insert_ignore
from conveyor.store.workspace import Workspace

__all__ = ["acquire", "new_holder", "release"]


def new_holder() -> str:
    """A name for this process as a lease holder: host, process id and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{ids.new_id()[-6:]}"


def acquire(
    ws: Workspace, name: str, holder: str, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Take or renew lease ``name`` for ``holder``; True while ``holder`` holds it."""
    now = now or utcnow()
    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        insert_ignore(
            uow.conn,
            leases,
            [{"name": name, "holder": holder, "acquired_at": now, "expires_at": now + ttl}],
            conflict_columns=["name"],
        )
        taken = uow.conn.execute(
            leases.update()
            .where(
                leases.c.name == name,
                sa.or_(leases.c.holder == holder, leases.c.expires_at < now),
            )
            .values(holder=holder, acquired_at=now, expires_at=now + ttl)
        )
        return bool(taken.rowcount == 1)


def release(ws: Workspace, name: str, holder: str) -> None:
    """Give lease ``name`` up, if ``holder`` holds it."""
    with ws.metadata.transaction(project_id=ws.project.id) as uow:
        uow.conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))
