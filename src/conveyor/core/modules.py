"""Importing user code by reference: a module name, or a ``.py`` file by path.

Pipelines, schedules and feature definitions are found again from where they were defined:
``package.module:name`` or ``/path/to/file.py:name``. A file is imported under a stable
private name (so it is imported once), and the running script itself is reused rather than
run again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from conveyor.core.errors import InvalidArgumentError, NotFoundError

__all__ = ["FILE_MODULE_PREFIX", "ModuleImportError", "entrypoint_of", "import_module_or_file"]

#: Modules imported from a file path (``conveyor pipeline run flows.py:train``) get this prefix.
FILE_MODULE_PREFIX = "_conveyor_pipeline_"


class ModuleImportError(InvalidArgumentError):
    """The user's module raised while it was imported."""

    code = "conveyor.pipeline_import_failed"


def entrypoint_of(obj: Any) -> str:
    """``module:qualname`` of a function, or ``/abs/file.py:qualname`` for a script or a file
    imported by path, so it can be imported again elsewhere."""
    module = obj.__module__
    if module == "__main__" or module.startswith(FILE_MODULE_PREFIX):
        path = getattr(sys.modules.get(module), "__file__", None)
        if path:
            return f"{os.path.abspath(path)}:{obj.__qualname__}"
    return f"{module}:{obj.__qualname__}"


def import_module_or_file(name: str) -> Any:
    """Import a module by name, or a .py file by path (the running script is reused)."""
    is_file = name.endswith(".py") or os.sep in name or "/" in name
    try:
        if is_file:
            path = Path(name).resolve()
            if not path.is_file():
                raise NotFoundError(f"There is no pipeline file {name}.")
            main = sys.modules.get("__main__")
            main_file = getattr(main, "__file__", None)
            if main_file and Path(main_file).resolve() == path:
                return main  # the running script: importing it again would re-run its body
            module_name = FILE_MODULE_PREFIX + hashlib.sha256(str(path).encode()).hexdigest()[:16]
            if module_name in sys.modules:
                return sys.modules[module_name]
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None
            assert spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module_name, None)
                raise
            return module
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(name)
    except NotFoundError:
        raise
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise NotFoundError(
                f"There is no module {name!r} to import the pipeline from.",
                hint="Run from the folder that holds it, or give FILE.py:PIPELINE.",
            ) from None
        raise ModuleImportError(f"Importing {name} failed: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise ModuleImportError(f"Importing {name} failed: {type(e).__name__}: {e}") from e
