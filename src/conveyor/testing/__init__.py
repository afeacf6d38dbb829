"""Helpers for testing code that uses Conveyor, shared with Conveyor's own tests.

- :func:`memory_workspace`: a workspace on an in-memory SQLite store and a memory:// artifact
  store, isolated per call.
- :mod:`conveyor.testing.contracts`: the test suites every backend passes; subclass one and
  provide the fixture it names to check a backend of your own.
"""

from __future__ import annotations

from conveyor.testing.workspaces import memory_workspace

__all__ = ["memory_workspace"]
