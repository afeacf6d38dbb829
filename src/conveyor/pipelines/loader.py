"""Finding a pipeline by reference: ``package.module:pipeline`` or ``path/to/file.py:pipeline``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from conveyor.core.errors import InvalidArgumentError, NotFoundError
from conveyor.pipelines.dsl import FILE_MODULE_PREFIX, Pipeline

__all__ = ["PipelineImportError", "load_pipeline"]


class PipelineImportError(InvalidArgumentError):
    """The module that defines a pipeline raised while it was imported."""

    code = "conveyor.pipeline_import_failed"


def load_pipeline(reference: str) -> Pipeline:
    """Import ``MODULE:PIPELINE`` (or ``FILE.py:PIPELINE``) and return the pipeline."""
    module_name, sep, attr = reference.rpartition(":")
    if not sep or not module_name or not attr:
        raise InvalidArgumentError(
            f"A pipeline reference is MODULE:PIPELINE or FILE.py:PIPELINE; got {reference!r}.",
            hint="For example: conveyor pipeline run pipelines.churn:train",
        )
    module = import_module_or_file(module_name)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            names = sorted(n for n, v in vars(module).items() if isinstance(v, Pipeline))
            raise NotFoundError(
                f"{module_name} has no pipeline called {attr!r}; "
                f"its pipelines: {', '.join(names) or '(none)'}."
            )
    if not isinstance(target, Pipeline):
        raise InvalidArgumentError(
            f"{reference} is a {type(target).__name__}, not a pipeline.",
            hint="Decorate the function with @cv.pipeline.",
        )
    return target


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
        raise PipelineImportError(f"Importing {name} failed: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise PipelineImportError(f"Importing {name} failed: {type(e).__name__}: {e}") from e
