"""Registry events, delivered in process to subscribers after the change has committed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.core.clock import utcnow

__all__ = ["EVENT_KINDS", "EventBus", "RegistryEvent"]

log = logging.getLogger("conveyor.models.events")

EVENT_KINDS = (
    "model_version.created",
    "alias.moved",
    "alias.deleted",
    "promotion.requested",
    "promotion.approved",
    "promotion.rejected",
)


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """Something that happened in the registry: ``kind``, the model, and the details."""

    kind: str
    model: str
    payload: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "at": self.at.isoformat(), **self.payload}


class EventBus:
    """Calls each subscriber for the kinds it asked for; a failing subscriber is logged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[tuple[Callable[[RegistryEvent], Any], frozenset[str] | None]] = []

    def subscribe(
        self, callback: Callable[[RegistryEvent], Any], kinds: list[str] | None = None
    ) -> Callable[[], None]:
        """Call ``callback`` on each event (of ``kinds``, if given); returns an unsubscribe."""
        from conveyor.core.errors import InvalidArgumentError

        unknown = sorted(set(kinds or ()) - set(EVENT_KINDS))
        if unknown:
            raise InvalidArgumentError(
                f"Unknown registry event kind(s) {', '.join(unknown)}; "
                f"kinds: {', '.join(EVENT_KINDS)}."
            )
        entry = (callback, frozenset(kinds) if kinds else None)
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def emit(self, event: RegistryEvent) -> None:
        with self._lock:
            targets = [
                cb for cb, kinds in self._subscribers if kinds is None or event.kind in kinds
            ]
        for callback in targets:
            try:
                callback(event)
            except Exception:
                log.exception("A subscriber to %s events failed", event.kind)
