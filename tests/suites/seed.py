"""Rows written straight into a store, for tests of what reads them (not of what writes them)."""

from __future__ import annotations

from conveyor.core.clock import utcnow
from conveyor.store.metadata.schema import alert_rules, alerts, monitors
from conveyor.store.metadata.store import UnitOfWork


def open_alert(
    uow: UnitOfWork, project_id: str, alert_id: str, *, monitor: str = "m", deployment: str = "d"
) -> None:
    """Add a monitor, a rule and an open alert ``alert_id`` of that rule to the project."""
    now = utcnow()
    monitor_id, rule_id = f"MON-{alert_id}", f"RULE-{alert_id}"
    uow.conn.execute(
        monitors.insert().values(
            id=monitor_id,
            project_id=project_id,
            name=monitor,
            deployment=deployment,
            reference="customers@1",
            window_seconds=3600,
            config={},
            created_at=now,
            created_by="t",
        )
    )
    uow.conn.execute(
        alert_rules.insert().values(
            id=rule_id,
            monitor_id=monitor_id,
            expression="drift.share_drifted > 0.3",
            cooldown_seconds=0,
            notify=[],
            created_at=now,
            created_by="t",
        )
    )
    uow.conn.execute(
        alerts.insert().values(
            id=alert_id,
            rule_id=rule_id,
            status="open",
            value=0.5,
            message="drifted",
            result_id="R",
            opened_at=now,
            last_seen_at=now,
            deliveries=[],
        )
    )
