"""Helpers for testing code that uses Conveyor, shared with Conveyor's own tests.

- :func:`memory_workspace`: a workspace on an in-memory SQLite store and a memory:// artifact
  store, isolated per call.
- :class:`ModelServerClient`: a model server in process, called as over HTTP
  (needs ``conveyor-mlops[serve]``).
- :mod:`conveyor.testing.contracts`: the test suites every backend passes; subclass one and
  provide the fixture it names to check a backend of your own.
"""

from __future__ import annotations

from typing import Any

from conveyor.testing.workspaces import memory_workspace

__all__ = ["ModelServerClient", "memory_workspace"]


def __getattr__(name: str) -> Any:
    # The server client needs FastAPI: imported on first use only.
    if name in ("ModelServerClient", "ServerError"):
        from conveyor.testing import serving

        return getattr(serving, name)
    raise AttributeError(f"module 'conveyor.testing' has no attribute {name!r}")
