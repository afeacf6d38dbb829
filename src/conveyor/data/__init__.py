"""Dataset versions: add, load, materialize, diff, check out, validate, push and pull.

>>> import conveyor as cv
>>> v = cv.data.add("customers", "data/customers/")         # doctest: +SKIP
>>> df = cv.data.load("customers@latest")                     # doctest: +SKIP
>>> cv.data.diff("customers@1", "customers@2").changed        # doctest: +SKIP

Each function works on the workspace in use (``cv.init``), or on ``workspace=`` if given.
Inside a run, ``load`` and ``path`` record that the run used the version, and ``add``
records that the run produced it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

    from conveyor.data.compare import DatasetDiff
    from conveyor.data.records import Dataset, DatasetVersion
    from conveyor.data.service import DataService, ProgressReporter
    from conveyor.data.transfer import TransferResult
    from conveyor.data.validation import ValidationReport
    from conveyor.store.workspace import Workspace

__all__ = [
    "add",
    "checkout",
    "datasets",
    "diff",
    "get",
    "infer_schema",
    "load",
    "load_arrow",
    "path",
    "pull",
    "push",
    "schema",
    "set_schema",
    "validate",
    "versions",
]


def _svc(workspace: Workspace | None) -> DataService:
    from conveyor.data.service import data_service

    return data_service(workspace)


def add(
    name: str,
    data: str | os.PathLike[str] | Any,
    *,
    description: str = "",
    workspace: Workspace | None = None,
    progress: ProgressReporter | None = None,
) -> DatasetVersion:
    """Add a version of dataset ``name`` from a file, a folder, a DataFrame or an Arrow table.

    Files are hashed in parallel and stored once by content; files unchanged since the last
    add (same path, size, mtime and inode) are not read again. Adding content identical to
    the latest version returns that version instead of numbering a new one.
    """
    return _svc(workspace).add(name, data, description=description, progress=progress)


def get(ref: str, *, workspace: Workspace | None = None) -> DatasetVersion:
    """Return the version ``ref`` names: ``name@3``, ``name@latest``, ``name@<digest prefix>``."""
    return _svc(workspace).get(ref)


def versions(name: str, *, workspace: Workspace | None = None) -> list[DatasetVersion]:
    """Return the versions of dataset ``name``, newest first."""
    return _svc(workspace).versions(name)


def datasets(*, workspace: Workspace | None = None) -> list[Dataset]:
    """Return the datasets of the project, sorted by name."""
    return _svc(workspace).datasets()


def load(ref: str, *, workspace: Workspace | None = None) -> pd.DataFrame:
    """Return a table version as a pandas DataFrame."""
    return _svc(workspace).load(ref)


def load_arrow(ref: str, *, workspace: Workspace | None = None) -> Any:
    """Return a table version as a pyarrow Table."""
    return _svc(workspace).load_arrow(ref)


def path(ref: str, *, workspace: Workspace | None = None) -> Path:
    """Return a local folder holding the version's files (read-only; materialized once)."""
    return _svc(workspace).path(ref)


def checkout(
    ref: str,
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    workspace: Workspace | None = None,
) -> Path:
    """Write the version's files into ``dest``, byte-identical; ``force`` replaces its content."""
    return _svc(workspace).checkout(ref, dest, force=force)


def diff(a: str, b: str, *, workspace: Workspace | None = None) -> DatasetDiff:
    """Compare versions ``a`` and ``b``: files, columns, row counts and column statistics."""
    return _svc(workspace).diff(a, b)


def infer_schema(
    ref: str, *, save: bool = True, overwrite: bool = False, workspace: Workspace | None = None
) -> pa.DataFrameSchema:
    """Infer a pandera schema from table version ``ref`` (saved with it unless ``save=False``;
    a different schema saved with it, set or edited, is replaced only with ``overwrite``)."""
    return _svc(workspace).infer_schema(ref, save=save, overwrite=overwrite)


def schema(ref: str, *, workspace: Workspace | None = None) -> pa.DataFrameSchema | None:
    """Return the schema saved with version ``ref``, or None."""
    return _svc(workspace).schema(ref)


def set_schema(
    ref: str, schema: pa.DataFrameSchema | str, *, workspace: Workspace | None = None
) -> None:
    """Save ``schema`` (a pandera schema or its YAML text) with version ``ref``."""
    _svc(workspace).set_schema(ref, schema)


def validate(
    data: Any,
    schema: pa.DataFrameSchema | str | os.PathLike[str] | None = None,
    *,
    workspace: Workspace | None = None,
) -> ValidationReport:
    """Check a DataFrame, Arrow table, version ref or table file against a schema: a pandera
    schema, its YAML text, or a YAML file's path.

    Without ``schema``, a version is checked against the schema saved with it or with the
    nearest earlier version that has one. Never raises for failed checks: look at
    ``report.passed`` or call ``report.raise_for_failures()``.
    """
    return _svc(workspace).validate(data, schema)


def push(
    refs: list[str] | str | None = None,
    remote: str | None = None,
    *,
    verify: bool = False,
    workspace: Workspace | None = None,
) -> TransferResult:
    """Copy what ``refs`` need (None, the default: every version; an empty list: none) to
    ``remote`` (default: remote_uri).
    With ``verify``, also read what the remote holds of them and replace any damaged object
    (one a pull reported as damaged there) with this store's copy."""
    return _svc(workspace).push(refs, remote, verify=verify)


def pull(
    refs: list[str] | str | None = None,
    remote: str | None = None,
    *,
    verify: bool = False,
    workspace: Workspace | None = None,
) -> TransferResult:
    """Copy what ``refs`` need (None, the default: every version; an empty list: none) from
    ``remote`` into this store.
    With ``verify``, also read what this store holds of them and replace any damaged object
    (one a checkout reported as corrupted) with the remote's copy."""
    return _svc(workspace).pull(refs, remote, verify=verify)
