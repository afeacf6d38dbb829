"""Names users give are checked before they reach a path or a query."""

from __future__ import annotations

import re

import pytest

from conveyor.core.errors import InvalidArgumentError
from conveyor.core.names import validate_artifact_path, validate_kind, validate_project_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [("plots/roc.png", "plots/roc.png"), ("a\\b.txt", "a/b.txt"), ("model", "model")],
)
def test_relative_paths_are_accepted_and_normalized(name: str, expected: str) -> None:
    assert validate_artifact_path(name) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../secrets", "'..'"),
        ("a/../../b", "'..'"),
        ("..\\windows", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("bad\x00name", "NUL"),
        ("a//b", "empty"),
        ("./a", "'.'"),
        ("", "empty"),
        ("x" * 1025, "1025 characters"),
    ],
)
def test_paths_that_could_escape_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(reason)):
        validate_artifact_path(name)


@pytest.mark.parametrize("kind", ["run", "model_version", "dataset_version"])
def test_kinds_are_lowercase_identifiers(kind: str) -> None:
    assert validate_kind(kind) == kind


@pytest.mark.parametrize("kind", ["Run", "1run", "run-x", "run;drop", ""])
def test_other_kinds_are_refused(kind: str) -> None:
    with pytest.raises(InvalidArgumentError, match="object kind"):
        validate_kind(kind)


@pytest.mark.parametrize("name", ['a"b', "-lead", "", "x" * 101, "sp ace"])
def test_project_names_are_checked(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="project name"):
        validate_project_name(name)
