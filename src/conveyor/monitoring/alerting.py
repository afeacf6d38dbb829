"""Alert rules over monitor results: open, deduplicate, notify, resolve.

A rule is ``FIELD OP NUMBER`` over a result's JSON form, e.g. ``drift.share_drifted > 0.3``,
``performance.accuracy < 0.8`` or ``service.versions.churn/3.p99_ms >= 200`` (a dotted path;
no code is evaluated). After each run of its monitor a rule that holds opens an alert, or,
if one is open already, marks it seen again (no second alert, no second notification); a
rule that no longer holds resolves its open alert. Notifications go out when an alert opens,
at most once per ``cooldown``, and when an alert that was notified resolves: ``log``,
``webhook:URL`` (a JSON POST, retried with back-off, each delivery recorded on the alert) and
``slack:URL`` (Slack's ``{"text": ...}`` payload).
"""

from __future__ import annotations

import json
import logging
import operator
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.core import ids
from conveyor.core.durations import parse_duration
from conveyor.core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from conveyor.core.uris import post_request
from conveyor.store.metadata.schema import alert_rules, alerts, monitors
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

__all__ = [
    "add_rule",
    "close_alert",
    "evaluate_rules",
    "list_alerts",
    "lookup",
    "number_fields",
    "parse_rule",
]

log = logging.getLogger("conveyor.alerts")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(
    r"\s*([A-Za-z_][\w./@-]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)\s*"
)
ALERT_KIND = "alert"


def parse_rule(expression: str) -> tuple[list[str], str, float]:
    """Split ``FIELD OP NUMBER`` into (path parts, operator, threshold), or raise clearly."""
    found = _RULE.fullmatch(expression or "")
    if not found:
        raise InvalidArgumentError(
            f"Cannot read the alert rule {expression!r}: expected FIELD OP NUMBER.",
            hint="e.g. 'drift.share_drifted > 0.3' or 'performance.accuracy < 0.8'; "
            "OP is one of > >= < <= == !=.",
        )
    path, op, number = found.groups()
    if path.split(".")[0] not in ("drift", "quality", "performance", "service", "rows"):
        raise InvalidArgumentError(
            f"The alert rule {expression!r} reads {path!r}: fields start with drift, quality, "
            "performance, service or rows."
        )
    return path.split("."), op, float(number)


def _notify_targets(notify: list[str]) -> list[str]:
    for target in notify:
        if target != "log" and not re.fullmatch(r"(webhook|slack):https?://\S+", target):
            raise InvalidArgumentError(
                f"Cannot notify {target!r}: use 'log', 'webhook:https://...' or "
                "'slack:https://hooks.slack.com/...'."
            )
    return list(notify)


def lookup(result: dict[str, Any], path: list[str]) -> float | None:
    """The number at ``path`` in ``result`` (None when absent or not a number).

    Keys may hold dots (a model version under service.versions): the longest key that
    matches the next parts is taken.
    """
    node: Any = result
    i = 0
    while i < len(path):
        if not isinstance(node, dict):
            return None
        for j in range(len(path), i, -1):
            key = ".".join(path[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return None
    if isinstance(node, bool):
        return float(node)
    return float(node) if isinstance(node, int | float) else None


def number_fields(result: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of ``result`` that hold a number (what a rule can read)."""
    found: list[str] = []
    for key, value in result.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            found += number_fields(value, f"{path}.")
        elif isinstance(value, int | float):
            found.append(path)
    return found


def add_rule(
    ws: Workspace,
    monitor_id: str,
    expression: str,
    *,
    cooldown: str | timedelta = "6h",
    notify: list[str] | None = None,
) -> dict[str, Any]:
    parse_rule(expression)
    span = cooldown if isinstance(cooldown, timedelta) else parse_duration(cooldown)
    targets = _notify_targets(notify or ["log"])
    rule_id = ids.new_id()
    project_id = str(ws.project.id)
    with ws.metadata.transaction(project_id=project_id) as uow:
        exists = uow.conn.execute(
            sa.select(alert_rules.c.id).where(
                alert_rules.c.monitor_id == monitor_id,
                alert_rules.c.expression == expression.strip(),
            )
        ).first()
        if exists is not None:
            raise AlreadyExistsError(f"The monitor already has the rule {expression!r}.")
        row = {
            "id": rule_id,
            "monitor_id": monitor_id,
            "expression": expression.strip(),
            "cooldown_seconds": int(span.total_seconds()),
            "notify": targets,
            "created_at": uow.now,
            "created_by": uow.actor,  # the caller, on a server
        }
        uow.conn.execute(alert_rules.insert(), [row])
        uow.audit(
            "alert_rule.create",
            ObjectRef("alert_rule", rule_id),
            after={"expression": row["expression"], "notify": targets},
        )
    return {k: row[k] for k in ("id", "expression", "cooldown_seconds", "notify")}


def evaluate_rules(
    ws: Workspace, monitor: dict[str, Any], result: dict[str, Any], result_id: str
) -> list[dict[str, Any]]:
    """Apply the monitor's rules to one stored result; return the alerts opened or resolved."""
    project_id = str(ws.project.id)
    changed: list[dict[str, Any]] = []
    to_notify: list[tuple[dict[str, Any], list[str]]] = []
    with ws.metadata.transaction(project_id=project_id) as uow:
        conn = uow.conn
        rules = conn.execute(
            sa.select(alert_rules).where(alert_rules.c.monitor_id == monitor["id"])
        ).all()
        for rule in rules:
            path, op, threshold = parse_rule(rule.expression)
            value = lookup(result, path)
            if value is None or (not result.get("rows") and not _about_volume(path)):
                # The window says nothing of it (no predictions, no labels yet): an alert
                # neither opens nor resolves on silence. Only how much came is known.
                continue
            holds = _OPS[op](value, threshold)
            open_alert = conn.execute(
                sa.select(alerts).where(
                    alerts.c.rule_id == rule.id, alerts.c.status.in_(("open", "acknowledged"))
                )
            ).first()
            if holds and open_alert is not None:
                conn.execute(
                    alerts.update()
                    .where(alerts.c.id == open_alert.id)
                    .values(last_seen_at=uow.now, value=value)
                )
                continue
            if holds:
                message = (
                    f"{monitor['name']} ({monitor['deployment']}): {rule.expression} "
                    f"(now {value:.4g}) in {_window(result)}"
                )
                alert_id = ids.new_id()
                conn.execute(
                    alerts.insert(),
                    [
                        {
                            "id": alert_id,
                            "rule_id": rule.id,
                            "status": "open",
                            "value": value,
                            "message": message,
                            "result_id": result_id,
                            "opened_at": uow.now,
                            "last_seen_at": uow.now,
                            "closed_at": None,
                            "deliveries": [],
                        }
                    ],
                )
                ref = ObjectRef(ALERT_KIND, alert_id)
                uow.audit("alert.open", ref, after={"rule": rule.expression, "value": value})
                uow.link(ObjectRef("monitor_result", result_id), ref, "raised")
                alert = {"id": alert_id, "status": "open", "message": message, "value": value}
                changed.append(alert)
                last = _last_notified(conn, rule.id, alert_id)
                cooled = last is None or uow.now - last >= timedelta(seconds=rule.cooldown_seconds)
                if cooled:
                    to_notify.append((alert, list(rule.notify)))
            elif open_alert is not None:
                conn.execute(
                    alerts.update()
                    .where(alerts.c.id == open_alert.id)
                    .values(status="resolved", closed_at=uow.now)
                )
                uow.audit(
                    "alert.resolve", ObjectRef(ALERT_KIND, open_alert.id), after={"by": "rule"}
                )
                resolved = {
                    "id": open_alert.id,
                    "status": "resolved",
                    "message": open_alert.message,
                    "value": value,
                }
                changed.append(resolved)
                if any(d.get("status") == "sent" for d in open_alert.deliveries or []):
                    # whoever was told it opened is told it is over
                    to_notify.append((resolved, list(rule.notify)))
    # Outside the transaction, the network may be slow; all at once, so that one endpoint
    # that times out delays the run by its own retries, not by everyone's in turn.
    sent = _deliver_all([(t, alert) for alert, targets in to_notify for t in targets], monitor)
    for alert, targets in to_notify:
        deliveries = [sent.pop(0) for _ in targets]
        with ws.metadata.transaction(project_id=project_id) as uow:
            before = uow.conn.execute(
                sa.select(alerts.c.deliveries).where(alerts.c.id == alert["id"])
            ).scalar()
            uow.conn.execute(
                alerts.update()
                .where(alerts.c.id == alert["id"])
                .values(deliveries=[*(before or []), *deliveries])
            )
    return changed


def _window(result: dict[str, Any]) -> str:
    """The result's window, readably: ``2026-11-29 14:00 to 15:00 UTC``."""
    try:
        start = datetime.fromisoformat(str(result["start"])).astimezone(UTC)
        end = datetime.fromisoformat(str(result["end"])).astimezone(UTC)
    except (KeyError, ValueError):
        return f"{result.get('start')} .. {result.get('end')}"
    last = f"{end:%H:%M:%S}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M:%S}"
    return f"the window {start:%Y-%m-%d %H:%M:%S} to {last} UTC"


#: Deliveries of one evaluation sent at once, at most.
DELIVERY_THREADS = 8
#: Tries per delivery, and the wait before the second (doubled before each next one).
DELIVERY_TRIES = 3
RETRY_DELAY_S = 0.5


def _deliver_all(
    pairs: list[tuple[str, dict[str, Any]]], monitor: dict[str, Any]
) -> list[dict[str, Any]]:
    """Deliver each ``(target, alert)`` of ``pairs`` side by side; return what each did, in
    order."""
    if len(pairs) <= 1:
        return [_deliver(target, alert, monitor) for target, alert in pairs]
    from concurrent.futures import ThreadPoolExecutor

    threads = min(DELIVERY_THREADS, len(pairs))
    with ThreadPoolExecutor(threads, thread_name_prefix="conveyor-alert") as pool:
        return list(pool.map(lambda pair: _deliver(pair[0], pair[1], monitor), pairs))


def _deliver(target: str, alert: dict[str, Any], monitor: dict[str, Any]) -> dict[str, Any]:
    at = datetime.now().astimezone().isoformat()
    event = "resolved" if alert["status"] == "resolved" else "opened"
    if target == "log":
        if event == "resolved":
            log.warning("RESOLVED %s", alert["message"])
        else:
            log.warning("ALERT %s", alert["message"])
        return {"target": "log", "event": event, "status": "sent", "at": at}
    kind, url = target.split(":", 1)
    slack = (
        f":white_check_mark: resolved: {alert['message']}"
        if event == "resolved"
        else f":rotating_light: {alert['message']}"
    )
    body = (
        {"text": slack}
        if kind == "slack"
        else {
            "event": event,
            "alert": alert,
            "monitor": monitor["name"],
            "deployment": monitor["deployment"],
        }
    )
    data = json.dumps(body, default=str).encode()
    error = ""
    for attempt in range(DELIVERY_TRIES):
        if attempt:
            time.sleep(RETRY_DELAY_S * 2 ** (attempt - 1))
        # http(s) URLs only, checked when the target was made
        request = post_request(url, data, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return {
                    "target": kind,
                    "event": event,
                    "status": "sent",
                    "code": response.status,
                    "at": at,
                }
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            error = str(e)
    log.error("Could not deliver alert %s to %s: %s", alert["id"], kind, error)
    return {"target": kind, "event": event, "status": "failed", "error": error[:300], "at": at}


#: The states of an alert.
ALERT_STATUSES = ("open", "acknowledged", "resolved")


def list_alerts(ws: Workspace, *, status: str | None = None) -> list[dict[str, Any]]:
    query = (
        sa.select(alerts, alert_rules.c.expression, monitors.c.name.label("monitor"))
        .join(alert_rules, alert_rules.c.id == alerts.c.rule_id)
        .join(monitors, monitors.c.id == alert_rules.c.monitor_id)
        .where(monitors.c.project_id == str(ws.project.id))
        .order_by(alerts.c.opened_at.desc(), alerts.c.id.desc())
    )
    if status is not None:
        if status not in ALERT_STATUSES:
            raise InvalidArgumentError(
                f"An alert's status is one of {', '.join(ALERT_STATUSES)}; got {status!r}."
            )
        query = query.where(alerts.c.status == status)
    with ws.metadata.read() as conn:
        rows = conn.execute(query).all()
    return [dict(r._mapping) for r in rows]


def _about_volume(path: list[str]) -> bool:
    """Whether a rule reads how many predictions came (meaningful for an empty window)."""
    return path[:1] == ["rows"] or path[:2] == ["quality", "volume"]


def _last_notified(conn: sa.Connection, rule_id: str, besides: str) -> Any:
    """When the rule's latest alert that was notified opened (None: never): the cooldown
    counts from a notification, not from alerts opened silently within an earlier one."""
    recent = conn.execute(
        sa.select(alerts.c.opened_at, alerts.c.deliveries)
        .where(alerts.c.rule_id == rule_id, alerts.c.id != besides)
        .order_by(alerts.c.opened_at.desc())
        .limit(1000)
    ).all()
    return next((r.opened_at for r in recent if r.deliveries), None)


def close_alert(ws: Workspace, alert_id: str, status: str) -> dict[str, Any]:
    """Acknowledge (still watched, no new alert while it holds) or resolve an alert by hand."""
    if status not in ("acknowledged", "resolved"):
        raise InvalidArgumentError(f"status must be acknowledged or resolved, not {status!r}.")
    with ws.metadata.transaction(project_id=str(ws.project.id)) as uow:
        row = uow.conn.execute(
            sa.select(alerts)
            .join(alert_rules, alert_rules.c.id == alerts.c.rule_id)
            .join(monitors, monitors.c.id == alert_rules.c.monitor_id)
            .where(alerts.c.id == alert_id, monitors.c.project_id == str(ws.project.id))
        ).first()
        if row is None:
            raise NotFoundError(f"No alert {alert_id!r}.", hint="conveyor alerts list")
        if row.status == status:
            return {"id": alert_id, "status": status}  # already so: nothing to change
        if row.status == "resolved":
            raise ConflictError(
                f"Alert {alert_id} was resolved at {row.closed_at:%Y-%m-%d %H:%M:%S} UTC: "
                "there is nothing left to acknowledge.",
                hint="If the rule holds again, a new alert opens.",
            )
        values: dict[str, Any] = {"status": status}
        if status == "resolved":
            values["closed_at"] = uow.now
        uow.conn.execute(alerts.update().where(alerts.c.id == alert_id).values(**values))
        action = {"acknowledged": "alert.ack", "resolved": "alert.resolve"}[status]
        uow.audit(
            action,
            ObjectRef(ALERT_KIND, alert_id),
            before={"status": row.status},
            after={"status": status},
        )
    return {"id": alert_id, "status": status}
