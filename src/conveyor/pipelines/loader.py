"""Finding a pipeline by reference: ``package.module:pipeline`` or ``path/to/file.py:pipeline``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from conveyor.core.errors import InvalidArgumentError, NotFoundError
from conveyor.core.modules import ModuleImportError, import_module_or_file
from conveyor.pipelines.dsl import Pipeline

__all__ = ["PipelineImportError", "import_module_or_file", "load_pipeline"]


#: The module that defines a pipeline raised while it was imported.
PipelineImportError = ModuleImportError


def load_pipeline(reference: str, *, root: Path | None = None) -> Pipeline:
    """Import ``MODULE:PIPELINE`` (or ``FILE.py:PIPELINE``) and return the pipeline.

    With ``root`` (a project's), a relative FILE.py is taken from the project's folder, not
    from wherever the process runs: what a stored reference (a policy's) means.
    """
    module_name, sep, attr = reference.rpartition(":")
    if not sep or not module_name or not attr:
        raise InvalidArgumentError(
            f"A pipeline reference is MODULE:PIPELINE or FILE.py:PIPELINE; got {reference!r}.",
            hint="For example: conveyor pipeline run pipelines.churn:train",
        )
    if module_name == "__main__":
        raise InvalidArgumentError(
            f"The pipeline {attr!r} was defined in a script run as __main__ (python -c, or "
            "python FILE.py), which cannot be imported again.",
            hint="Resume it from Python, passing the pipeline: cv.pipelines.resume(RUN, "
            "pipeline=...); or define it in a module or a file: MODULE:PIPELINE, FILE.py:PIPELINE.",
        )
    if root is not None and module_name.endswith(".py") and not Path(module_name).is_absolute():
        module_name = str(Path(root) / module_name)
    elif root is not None and str(root) not in sys.path:
        # A module of the project (pipelines.churn): importable from its folder, as when
        # the command runs there.
        sys.path.insert(0, str(root))
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
