"""Pick a backend by URI scheme through one lazy registry per kind of backend.

Each registry maps a scheme to ``"module:Class"`` and imports only the backend chosen.
Third-party packages add schemes through the entry-point group named by the registry,
for example ``[project.entry-points."conveyor.artifact_backends"] gs = "pkg.mod:GcsBackend"``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from conveyor.core.errors import InvalidArgumentError
from conveyor.core.uris import redact_uri

__all__ = ["BackendRegistry", "scheme_of"]


def scheme_of(uri: str) -> str:
    """Return the scheme of ``uri`` (``postgresql+psycopg`` -> ``postgresql``); ``file`` if none."""
    if "://" not in uri and not uri.startswith(("sqlite:", "memory:", "redis:")):
        return "file"
    scheme = urlsplit(uri).scheme.lower()
    return scheme.split("+", 1)[0] or "file"


class BackendRegistry:
    """Maps URI schemes to backend classes for one kind of backend, loading them lazily."""

    def __init__(self, kind: str, entry_point_group: str, builtins: dict[str, str]) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._targets: dict[str, str] = dict(builtins)
        self._entry_points_loaded = False

    def register(self, scheme: str, target: str) -> None:
        """Register ``target`` (``"module:Class"``) for ``scheme``."""
        self._targets[scheme.lower()] = target

    def schemes(self) -> list[str]:
        """Return the schemes this registry knows, sorted."""
        self._load_entry_points()
        return sorted(self._targets)

    def resolve(self, uri: str) -> Any:
        """Return the backend class registered for the scheme of ``uri``."""
        scheme = scheme_of(uri)
        target = self._targets.get(scheme)
        if target is None:  # plugins only add schemes, so built-ins need no entry-point scan
            self._load_entry_points()
            target = self._targets.get(scheme)
        if target is None:
            known = ", ".join(f"{s}://" for s in sorted(self._targets))
            hint = (
                f"Install the extra that provides it or register it under the "
                f"'{self.entry_point_group}' entry-point group."
            )
            if scheme == "file" and "sqlite" in self._targets:  # a bare path: x.db
                path = redact_uri(uri.removeprefix("file://"))
                hint = f"For a SQLite file, write sqlite:///{path}."
            raise InvalidArgumentError(
                f"The {self.kind} URI {redact_uri(uri)!r} has the scheme {scheme!r}, which is "
                "not supported. "
                f"Supported schemes: {known}.",
                hint=hint,
            )
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise InvalidArgumentError(
                f"The {self.kind} backend for {scheme}:// needs a package that is not installed "
                f"({e.name or e}).",
                hint=f"Install it, e.g. pip install 'conveyor-mlops[{_extra_for(scheme)}]'.",
            ) from e
        return getattr(module, attr)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            self._targets.setdefault(ep.name.lower(), ep.value)


def _extra_for(scheme: str) -> str:
    return {"postgresql": "postgres", "s3": "s3", "redis": "redis", "ray": "ray"}.get(scheme, "all")
