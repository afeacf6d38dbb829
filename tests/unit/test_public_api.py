"""The public surface: what `conveyor` exports, and that importing it stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import conveyor

HEAVY = ["sqlalchemy", "alembic", "fsspec", "s3fs", "typer", "rich", "pandas", "duckdb", "ray"]


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert conveyor.__all__ == sorted(conveyor.__all__)
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None, name


def test_public_names_are_exactly_all() -> None:
    # submodules imported as a side effect of other tests are not part of the API
    public = {
        n
        for n in dir(conveyor)
        if not n.startswith("_") and not isinstance(getattr(conveyor, n), types.ModuleType)
    }
    # ...but the domain namespaces reached as attributes are (cv.data.add, ...)
    assert public | {
        "__version__",
        "data",
        "features",
        "models",
        "loop",
        "monitoring",
        "pipelines",
        "serving",
    } == set(conveyor.__all__)


def test_domain_namespaces_resolve_lazily() -> None:
    result = _fresh(
        "import json, sys; import conveyor as cv; before = 'conveyor.data' in sys.modules; "
        "cv.data.add; print(json.dumps({'before': before, 'after': 'pandas' in sys.modules}))"
    )
    assert result == {"before": False, "after": False}


def test_the_models_namespace_resolves_without_pandas() -> None:
    result = _fresh(
        "import json, sys; import conveyor as cv; cv.models.log; cv.models.PythonModel; "
        "print(json.dumps({'pandas': 'pandas' in sys.modules}))"
    )
    assert result == {"pandas": False}


def _fresh(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def test_import_conveyor_is_light_and_fast() -> None:
    result = _fresh(
        "import json, sys, time; t = time.perf_counter(); import conveyor; "
        "d = time.perf_counter() - t; "
        f"print(json.dumps({{'s': d, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    assert result["loaded"] == []
    assert result["s"] < 0.5, f"import conveyor took {result['s']:.3f}s"


def test_choosing_the_local_backend_does_not_import_s3fs() -> None:
    result = _fresh(
        "import json, sys; from conveyor.store.artifacts.cas import ArtifactStore; "
        "ArtifactStore('/tmp/conveyor-objects').backend; "
        "print(json.dumps({'loaded': 's3fs' in sys.modules}))"
    )
    assert result["loaded"] is False


def test_defining_steps_and_pipelines_imports_no_heavy_module() -> None:
    result = _fresh(
        "import json, sys; import conveyor as cv\n"
        "@cv.step\ndef one() -> int:\n    return 1\n"
        "@cv.pipeline\ndef p():\n    one()\n"
        "print(json.dumps({'heavy': sorted(m for m in "
        f"{HEAVY!r} if m in sys.modules)}}))"
    )
    assert result == {"heavy": []}
