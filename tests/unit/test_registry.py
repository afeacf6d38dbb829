"""Backends are picked by URI scheme; unknown schemes get a list of the known ones."""

from __future__ import annotations

import pytest

from conveyor.core.errors import ConveyorError, InvalidArgumentError
from conveyor.core.registry import scheme_of
from conveyor.store.artifacts.local import LocalBackend
from conveyor.store.backends import ARTIFACT_BACKENDS, METADATA_STORES
from conveyor.store.metadata.store import MetadataStore
from conveyor.store.workspace import Workspace


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("sqlite:///x.db", "sqlite"),
        ("postgresql+psycopg://h/db", "postgresql"),
        ("s3://b/p", "s3"),
        ("/abs/path", "file"),
        ("relative/path", "file"),
        ("file:///x", "file"),
        ("memory://x", "memory"),
    ],
)
def test_scheme_of(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme


def test_known_schemes_resolve_to_their_backend() -> None:
    assert METADATA_STORES.resolve("sqlite:///x.db") is MetadataStore
    assert METADATA_STORES.resolve("postgresql://h/db") is MetadataStore
    assert ARTIFACT_BACKENDS.resolve("/tmp/objects") is LocalBackend


def test_an_unknown_metadata_scheme_lists_the_supported_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.from_settings(tmp_path, store_uri="mysql://db/x")
    with pytest.raises(InvalidArgumentError, match=r"'mysql'.*postgresql://.*sqlite://"):
        _ = ws.metadata


def test_an_unknown_artifact_scheme_lists_the_supported_ones() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'ftp'.*file://.*memory://.*s3://"):
        ARTIFACT_BACKENDS.resolve("ftp://host/objects")


def test_a_password_in_an_unknown_uri_is_not_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.from_settings(tmp_path, store_uri="mysql://u:hunter2@db/x")
    with pytest.raises(InvalidArgumentError) as info:
        _ = ws.metadata
    assert "hunter2" not in str(info.value)
    assert "u:***@db" in str(info.value)


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql//u:hunter2@db/x",  # the colon forgotten: not a URI at all
        "http://u:hunter2@127.0.0.1:1",  # a team server that cannot be reached
    ],
)
def test_a_password_in_a_store_uri_is_not_shown_when_it_fails(tmp_path, uri: str) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.from_settings(tmp_path, store_uri=uri)
    with pytest.raises(ConveyorError) as info:
        _ = ws.project
    assert "hunter2" not in str(info.value)
    assert "u:***@" in str(info.value)


def test_a_bad_port_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.from_settings(tmp_path, store_uri="postgresql://u:pw@db:notaport/x")
    with pytest.raises(InvalidArgumentError, match="cannot be parsed"):
        _ = ws.metadata


def test_a_bare_file_as_the_metadata_store_says_to_write_a_sqlite_uri(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.from_settings(tmp_path, store_uri="meta.db")
    with pytest.raises(InvalidArgumentError, match=r"write sqlite:///"):
        _ = ws.metadata
