"""Every error as one JSON body with the stable code: ``{"error": {"code", "message", "hint"}}``."""

from __future__ import annotations

import logging
from typing import Any

from conveyor.core.errors import ConveyorError

__all__ = ["STATUS", "error_body", "status_for"]

log = logging.getLogger("conveyor.server")

#: HTTP status of each error code; anything else a ConveyorError raises is a 400.
STATUS: dict[str, int] = {
    "conveyor.not_found": 404,
    "conveyor.already_exists": 409,
    "conveyor.invalid_argument": 422,
    "conveyor.data_validation": 422,
    "conveyor.conflict": 409,
    "conveyor.integrity": 500,
    "conveyor.permission_denied": 403,
    "conveyor.unauthenticated": 401,
    "conveyor.rate_limited": 429,
    "conveyor.backend_unavailable": 503,
    "conveyor.payload_too_large": 413,
    "conveyor.error": 400,
}


def status_for(error: ConveyorError) -> int:
    return STATUS.get(error.code, 400)


def error_body(code: str, message: str, hint: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "hint": hint}
    body.update(extra)
    return {"error": body}
