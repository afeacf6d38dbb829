"""Conveyor's errors (the tree and codes are documented in :mod:`conveyor.core.errors`)."""

from conveyor.core.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ConflictError,
    ConveyorError,
    DataValidationError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnauthenticatedError,
)

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
