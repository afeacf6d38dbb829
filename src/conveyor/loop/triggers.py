"""Which of a policy's triggers fired since the controller last looked.

Each trigger reads from a cursor kept with the policy (the next scheduled fire; the newest
monitor result, alert or dataset version seen), so a trigger fires once: the controller
advances the cursors in the same transaction that starts the execution or records why it
did not. The key of a fired trigger names what fired it (``drift:<result id>``,
``schedule:<fire time>``...), and a policy never has two executions with one key.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from conveyor.loop.policy import OnAlert, OnDrift, OnMetric, OnNewData, Policy, Schedule
from conveyor.store.metadata.schema import alert_rules, alerts, monitor_results, monitors
from conveyor.store.workspace import Workspace

__all__ = ["Fired", "fired", "initial_cursors"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}


@dataclass(frozen=True, slots=True)
class Fired:
    key: str
    detail: dict[str, Any]  # kind, reason, and the source object (kind, id) for lineage


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _cursor_key(trigger: Any) -> str:
    if isinstance(trigger, Schedule):
        return f"schedule:{trigger.cron}"
    if isinstance(trigger, OnNewData):
        return f"data:{trigger.dataset}"
    if isinstance(trigger, OnAlert):
        return f"alerts:{trigger.monitor}"
    return f"results:{trigger.monitor}"


def _latest_version_id(ws: Workspace, dataset: str) -> str | None:
    from conveyor.data.service import data_service

    versions = data_service(ws).versions(dataset)
    return max(versions, key=lambda v: v.version).id if versions else None


def initial_cursors(
    ws: Workspace, policy: Policy, now: datetime, old: dict[str, Any] | None
) -> dict[str, Any]:
    """Cursors that make each trigger fire only for what happens from ``now`` on (a trigger
    the policy had before keeps its cursor)."""
    from conveyor.pipelines.schedules import next_fire

    cursors: dict[str, Any] = {}
    for trigger in policy.triggers:
        key = _cursor_key(trigger)
        if old and key in old:
            cursors[key] = old[key]
        elif isinstance(trigger, Schedule):
            cursors[key] = _iso(next_fire(trigger.cron, now))
        elif isinstance(trigger, OnNewData):
            cursors[key] = _latest_version_id(ws, trigger.dataset)
        else:
            cursors[key] = _iso(now)
    return cursors


def fired(
    ws: Workspace, policy: Policy, cursors: dict[str, Any], now: datetime
) -> tuple[list[Fired], dict[str, Any]]:
    """The triggers that fired since ``cursors``, oldest first, and the advanced cursors."""
    from conveyor.monitoring.alerting import lookup
    from conveyor.pipelines.schedules import next_fire

    project_id = str(ws.project.id)
    out: list[tuple[datetime, Fired]] = []
    moved = dict(cursors)
    for trigger in policy.triggers:
        key = _cursor_key(trigger)
        cursor = cursors.get(key)  # as read: triggers sharing a cursor each see every row
        if isinstance(trigger, Schedule):
            due = _parse(cursor) if cursor else next_fire(trigger.cron, now)
            if due <= now:
                out.append(
                    (
                        due,
                        Fired(
                            f"schedule:{trigger.cron}:{_iso(due)}",
                            {"kind": "schedule", "reason": f"{trigger.cron} at {_iso(due)}"},
                        ),
                    )
                )
                moved[key] = _iso(next_fire(trigger.cron, now))
            continue
        if isinstance(trigger, OnNewData):
            latest = _latest_version_id(ws, trigger.dataset)
            if latest is not None and latest != cursor:
                from conveyor.data.service import data_service

                version = max(data_service(ws).versions(trigger.dataset), key=lambda v: v.version)
                out.append(
                    (
                        now,
                        Fired(
                            f"data:{latest}",
                            {
                                "kind": "new_data",
                                "reason": f"new version {version.ref}",
                                "source": {"kind": "dataset_version", "id": latest},
                            },
                        ),
                    )
                )
                moved[key] = latest
            continue
        since = _parse(cursor) if cursor else now
        with ws.metadata.read() as conn:
            if isinstance(trigger, OnAlert):
                rows = conn.execute(
                    sa.select(alerts.c.id, alerts.c.opened_at, alerts.c.message)
                    .join(alert_rules, alert_rules.c.id == alerts.c.rule_id)
                    .join(monitors, monitors.c.id == alert_rules.c.monitor_id)
                    .where(
                        monitors.c.project_id == project_id,
                        monitors.c.name == trigger.monitor,
                        alerts.c.opened_at > since,
                    )
                    .order_by(alerts.c.opened_at)
                ).all()
                for row in rows:
                    opened = row.opened_at.replace(tzinfo=UTC)
                    detail = {
                        "kind": "alert",
                        "reason": row.message,
                        "source": {"kind": "alert", "id": row.id},
                    }
                    out.append((opened, Fired(f"alert:{row.id}", detail)))
                    moved[key] = _iso(max(_parse(moved[key]) if moved.get(key) else opened, opened))
                continue
            rows = conn.execute(
                sa.select(
                    monitor_results.c.id, monitor_results.c.created_at, monitor_results.c.result
                )
                .join(monitors, monitors.c.id == monitor_results.c.monitor_id)
                .where(
                    monitors.c.project_id == project_id,
                    monitors.c.name == trigger.monitor,
                    monitor_results.c.created_at > since,
                )
                .order_by(monitor_results.c.created_at)
            ).all()
        for row in rows:
            at = row.created_at.replace(tzinfo=UTC)
            moved[key] = _iso(max(_parse(moved[key]) if moved.get(key) else at, at))
            result = row.result
            source = {"kind": "monitor_result", "id": row.id}
            if isinstance(trigger, OnDrift):
                drift = result.get("drift", {})
                share = drift.get("share_drifted") or 0.0
                hit = (
                    share >= trigger.min_share
                    if trigger.min_share is not None
                    else bool(drift.get("dataset_drifted"))
                )
                if hit:
                    columns = ", ".join(drift.get("drifted_columns", [])[:5])
                    reason = f"{trigger.monitor}: {share:.0%} of columns drifted ({columns})"
                    detail = {"kind": "drift", "reason": reason, "source": source}
                    out.append((at, Fired(f"drift:{row.id}", detail)))
            elif isinstance(trigger, OnMetric):
                value = lookup(result, trigger.field.split("."))
                if value is not None and _OPS[trigger.op](value, float(trigger.value)):
                    reason = (
                        f"{trigger.monitor}: {trigger.field} = {value:.4g} "
                        f"{trigger.op} {trigger.value:g}"
                    )
                    detail = {"kind": "metric", "reason": reason, "source": source}
                    out.append((at, Fired(f"metric:{trigger.field}:{row.id}", detail)))
    out.sort(key=lambda pair: pair[0])
    return [f for _, f in out], moved
