"""The error tree: stable codes, builtin parents, messages with hints."""

from __future__ import annotations

import pytest

from conveyor import errors

TREE = {
    "ConveyorError": (Exception, "conveyor.error"),
    "NotFoundError": (LookupError, "conveyor.not_found"),
    "AlreadyExistsError": (FileExistsError, "conveyor.already_exists"),
    "InvalidArgumentError": (ValueError, "conveyor.invalid_argument"),
    "ConflictError": (RuntimeError, "conveyor.conflict"),
    "IntegrityError": (ValueError, "conveyor.integrity"),
    "DataValidationError": (ValueError, "conveyor.data_validation"),
    "PermissionDeniedError": (PermissionError, "conveyor.permission_denied"),
    "UnauthenticatedError": (PermissionError, "conveyor.unauthenticated"),
    "RateLimitedError": (RuntimeError, "conveyor.rate_limited"),
    "BackendUnavailableError": (ConnectionError, "conveyor.backend_unavailable"),
}


@pytest.mark.parametrize(("name", "expected"), TREE.items())
def test_each_error_has_its_stable_code_and_builtin_parent(name: str, expected: tuple) -> None:
    builtin, code = expected
    cls = getattr(errors, name)
    assert issubclass(cls, errors.ConveyorError)
    assert issubclass(cls, builtin)
    assert cls.code == code


def test_the_tree_is_complete_and_codes_are_unique() -> None:
    assert sorted(errors.__all__) == sorted(TREE)
    assert len({getattr(errors, n).code for n in errors.__all__}) == len(TREE)


def test_the_hint_follows_the_message() -> None:
    e = errors.NotFoundError("No run 'x'.", hint="List runs with conveyor runs list.")
    assert str(e) == "No run 'x'. List runs with conveyor runs list."
    assert e.message == "No run 'x'."
