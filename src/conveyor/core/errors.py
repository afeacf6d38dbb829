"""Every error Conveyor raises, with a stable code.

The tree (each class also subclasses the builtin that matches, so ``except LookupError``
keeps working for code that does not know Conveyor)::

    ConveyorError                      conveyor.error
    ├── NotFoundError                  conveyor.not_found            (LookupError)
    ├── AlreadyExistsError             conveyor.already_exists       (FileExistsError)
    ├── InvalidArgumentError           conveyor.invalid_argument     (ValueError)
    ├── ConflictError                  conveyor.conflict             (RuntimeError)
    ├── IntegrityError                 conveyor.integrity            (ValueError)
    ├── DataValidationError            conveyor.data_validation      (ValueError)
    ├── PermissionDeniedError          conveyor.permission_denied    (PermissionError)
    ├── UnauthenticatedError           conveyor.unauthenticated      (PermissionError)
    ├── RateLimitedError               conveyor.rate_limited         (RuntimeError)
    └── BackendUnavailableError        conveyor.backend_unavailable  (ConnectionError)

Messages say what is wrong, what was expected, what arrived and what to do next. Transports
(the CLI, the REST server, the model server) map codes to exit codes or HTTP statuses; the
classes here know nothing about transports.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "BackendUnavailableError",
    "ConflictError",
    "ConveyorError",
    "DataValidationError",
    "IntegrityError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "UnauthenticatedError",
]


class ConveyorError(Exception):
    """The root of every error Conveyor raises on purpose."""

    code: str = "conveyor.error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


class NotFoundError(ConveyorError, LookupError):
    """The object asked for does not exist."""

    code = "conveyor.not_found"


class AlreadyExistsError(ConveyorError, FileExistsError):
    """An object with that identity exists already."""

    code = "conveyor.already_exists"


class InvalidArgumentError(ConveyorError, ValueError):
    """An argument has the wrong form or value."""

    code = "conveyor.invalid_argument"


class ConflictError(ConveyorError, RuntimeError):
    """The change conflicts with the current state (a concurrent update, a different value)."""

    code = "conveyor.conflict"


class IntegrityError(ConveyorError, ValueError):
    """Stored bytes do not match their recorded digest."""

    code = "conveyor.integrity"


class DataValidationError(ConveyorError, ValueError):
    """Data failed the checks of its schema; ``report`` holds what failed where."""

    code = "conveyor.data_validation"

    def __init__(self, message: str, *, hint: str | None = None, report: object = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class PermissionDeniedError(ConveyorError, PermissionError):
    """The actor may not do this."""

    code = "conveyor.permission_denied"


class UnauthenticatedError(ConveyorError, PermissionError):
    """The caller did not prove who they are (no token, or an unknown, revoked or expired one)."""

    code = "conveyor.unauthenticated"


class RateLimitedError(ConveyorError, RuntimeError):
    """Too many attempts in a short time; wait and retry."""

    code = "conveyor.rate_limited"


class BackendUnavailableError(ConveyorError, ConnectionError):
    """A backend (database, object store, cache, cluster) cannot be reached."""

    code = "conveyor.backend_unavailable"
