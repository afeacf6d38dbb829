"""scikit-learn models, stored with skops: no pickle, and only the types recorded at save load."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import pkgutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any, ClassVar

from conveyor.core.errors import IntegrityError, InvalidArgumentError, PermissionDeniedError
from conveyor.models.flavors import Flavor, module_roots

__all__ = [
    "SklearnFlavor",
    "check_trees",
    "foreign_type_allowed",
    "foreign_types",
    "skops_defaults",
    "skops_io",
    "without_pandas",
]

FILE = "model.skops"

_lean: ContextVar[bool] = ContextVar("conveyor_sklearn_without_pandas", default=False)


@contextmanager
def without_pandas() -> Iterator[None]:
    """Within the block, a first import of scikit-learn leaves pandas unloaded.

    ``sklearn.utils.fixes`` imports pandas whenever it is installed, for a module-level name
    nothing reads (its one pandas helper takes pandas as an argument). pandas and pyarrow
    are then about 40 MB and 0.2 s of a model server that serves arrays. A model server
    loads its first models in this block, before it serves anything, while no other thread
    imports (pandas is hidden from every thread meanwhile); pandas stays importable, and
    whatever needs a DataFrame imports it then.
    """
    token = _lean.set(True)
    try:
        yield
    finally:
        _lean.reset(token)


def _import_sklearn_without_pandas() -> None:
    if "sklearn" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # import pandas: ImportError
    try:
        import sklearn.base
    except ImportError:  # a scikit-learn that needs pandas to import: the plain import
        pass
    finally:
        if "pandas" in sys.modules and sys.modules["pandas"] is None:
            del sys.modules["pandas"]
    import sklearn.base  # noqa: F401


def skops_io() -> ModuleType:
    """Import ``skops.io`` without listing scikit-learn's estimators or SciPy's ufuncs.

    Importing skops builds its default trusted types. It lists the estimators with
    ``all_estimators()``, which imports every sub-package of scikit-learn: a third of a
    model server's start-up. And it names each of SciPy's ~230 ufuncs by searching every
    loaded module for it, about 0.2 s in a server that has its web stack loaded. A load
    needs neither list, since it trusts exactly the types recorded when the model was
    saved, so skops is imported with both empty, filled in place (:func:`skops_defaults`)
    before anything that uses them: saving, checking an upload, or a load whose recorded
    types fall short (a file saved before they were all recorded).
    """
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    with _skops_lock:  # two first loads at once: one imports, the other waits for it
        if "skops.io" in sys.modules:
            return sys.modules["skops.io"]
        if _lean.get():
            _import_sklearn_without_pandas()
        import sklearn.utils

        listing = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = _no_estimators
        finder = _lean_finder()
        finder.active = True
        try:
            import skops.io
        finally:
            finder.active = False
            sklearn.utils.all_estimators = listing
            finder.restore()
        return skops.io


#: Held while skops is imported and while its default lists are filled (they are changed in
#: place, once).
_skops_lock = threading.RLock()


def _lean_finder() -> _LeanUfuncNames:
    """The finder, put on ``sys.meta_path`` once and left there (idle unless ``active``).

    Taking it off again would change the list while other threads' imports walk it.
    """
    for finder in sys.meta_path:
        if isinstance(finder, _LeanUfuncNames):
            return finder
    finder = _LeanUfuncNames()
    sys.meta_path.insert(0, finder)
    return finder


def _no_estimators(type_filter: Any = None) -> list[Any]:
    return []


class _LeanUfuncNames(importlib.abc.MetaPathFinder):
    """While ``skops.io`` is first imported (``active``): its SciPy ufunc names come out empty.

    skops computes them when ``skops.io._trusted_types`` runs, through
    ``skops.io._utils.get_public_type_names``; this finder loads ``_utils`` as usual and
    wraps that one function until :meth:`restore`. Should skops move it, nothing is
    wrapped and the import is the plain one.
    """

    _target = "skops.io._utils"

    def __init__(self) -> None:
        self.active = False
        self._module: ModuleType | None = None
        self._original: Any = None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if not self.active or fullname != self._target:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        loader = getattr(spec, "loader", None)
        if spec is None or not isinstance(loader, importlib.machinery.SourceFileLoader):
            return None
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            original = getattr(module, "get_public_type_names", None)
            if callable(original):
                self._module, self._original = module, original
                module.get_public_type_names = _without_scipy(original)  # type: ignore[attr-defined]

        loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader
        return spec

    def restore(self) -> None:
        if self._module is None:
            return
        self._module.get_public_type_names = self._original  # type: ignore[attr-defined]
        trusted = sys.modules.get("skops.io._trusted_types")
        if trusted is not None and hasattr(trusted, "get_public_type_names"):
            trusted.get_public_type_names = self._original  # type: ignore[attr-defined]


def _without_scipy(original: Any) -> Any:
    def names(module: ModuleType, oftype: type) -> list[str]:
        if getattr(module, "__name__", None) == "scipy.special":
            return []
        return list(original(module, oftype))

    return names


def skops_defaults() -> None:
    """Fill skops's default trusted scikit-learn types, if :func:`skops_io` left them empty.

    ``all_estimators()`` walks every sub-package, including the ones it then ignores; one
    of them imports PyTorch when it is installed (over a second). The walk is done here
    without entering the packages it ignores, so the list is the one skops builds itself.
    """
    skops_io()
    with _skops_lock:
        _fill_defaults()


def _fill_defaults() -> None:
    from sklearn.utils import discovery
    from skops.io import _trusted_types
    from skops.io._utils import get_type_name

    _fill_scipy_ufunc_names(_trusted_types)
    names = getattr(_trusted_types, "SKLEARN_ESTIMATOR_TYPE_NAMES", None)
    if not isinstance(names, list) or names:
        return
    ignored = getattr(discovery, "_MODULE_TO_IGNORE", None)
    original = getattr(discovery, "pkgutil", None)
    patched = isinstance(ignored, set | frozenset) and original is pkgutil

    def walk(path: Any = None, prefix: str = "", onerror: Any = None) -> Iterator[Any]:
        assert isinstance(ignored, set | frozenset)
        for info in pkgutil.iter_modules(path, prefix):
            if any(part in ignored for part in info.name.split(".")):
                continue
            yield info
            if info.ispkg:
                module = importlib.import_module(info.name)
                yield from walk(getattr(module, "__path__", None) or [], info.name + ".")

    class _Pkgutil:
        walk_packages = staticmethod(walk)

        def __getattr__(self, name: str) -> Any:
            return getattr(pkgutil, name)

    if patched:
        discovery.pkgutil = _Pkgutil()
    try:
        found = [get_type_name(c) for _, c in discovery.all_estimators()]
    finally:
        discovery.pkgutil = pkgutil
    names.extend(n for n in found if n.startswith("sklearn."))


def _fill_scipy_ufunc_names(trusted_types: ModuleType) -> None:
    """Name SciPy's ufuncs in skops's list in place, as skops's import does (see skops_io)."""
    names = getattr(trusted_types, "SCIPY_UFUNC_TYPE_NAMES", None)
    if not isinstance(names, list) or names:
        return
    import warnings

    import numpy as np
    import scipy.special
    from skops.io._utils import get_public_type_names

    try:
        from skops.utils._fixes import get_scipy_ufunc_wrapper_type
    except ImportError:  # pragma: no cover - a skops from before SciPy 2's ufunc wrappers

        def get_scipy_ufunc_wrapper_type() -> Any:
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        found = set(get_public_type_names(module=scipy.special, oftype=np.ufunc))
        wrapper = get_scipy_ufunc_wrapper_type()
        if wrapper is not None:
            found |= set(get_public_type_names(module=scipy.special, oftype=wrapper))
    names.extend(sorted(found))


class SklearnFlavor(Flavor):
    name: ClassVar[str] = "sklearn"
    packages: ClassVar[tuple[str, ...]] = ("scikit-learn", "skops", "numpy", "scipy")

    def handles(self, model: Any) -> bool:
        return "sklearn" in module_roots(model) and hasattr(model, "predict")

    def save(self, model: Any, example: Any = None) -> tuple[dict[str, bytes], dict[str, Any]]:
        skops_defaults()
        import skops.io
        from skops.io.exceptions import UnsupportedTypeException

        try:
            data, types = _dumps(model)
        except (UnsupportedTypeException, TypeError) as e:
            raise InvalidArgumentError(
                f"skops cannot store this {type(model).__name__}: {e}.",
                hint="Wrap the model in a cv.models.PythonModel subclass (stored with "
                "cloudpickle; loading it then needs trust=True).",
            ) from e
        # Every type the file holds is recorded now, so loading trusts exactly these and
        # refuses a file that was changed to hold anything else.
        # (The types skops reports for the file are added: a nested object skops stores in
        # its own way, such as a pipeline's gradient-boosting trees, can escape the walk.)
        reported = set(skops.io.get_untrusted_types(data=data))
        trusted = sorted(reported | set(types or ()))
        info = {
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "trusted_types": trusted,
            "has_predict_proba": hasattr(model, "predict_proba"),
            "classes": _jsonable(getattr(model, "classes_", None)),
            "n_features_in": getattr(model, "n_features_in_", None),
            "feature_names": [str(n) for n in getattr(model, "feature_names_in_", [])] or None,
        }
        return {FILE: data}, info

    def predict(self, model: Any, data: Any) -> Any:
        mean = _forest_mean(model, data)
        if mean is None:
            return model.predict(data)
        if mean.ndim == 2:  # a classifier's class probabilities
            return model.classes_.take(mean.argmax(axis=1), axis=0)
        return mean

    def predict_proba(self, model: Any, data: Any) -> Any:
        mean = _forest_mean(model, data)
        if mean is not None and mean.ndim == 2:
            return mean
        return super().predict_proba(model, data)

    def predict_and_proba(self, model: Any, data: Any) -> tuple[Any, Any]:
        mean = _forest_mean(model, data)
        if mean is not None and mean.ndim == 2:  # one pass over the trees for both
            return model.classes_.take(mean.argmax(axis=1), axis=0), mean
        return super().predict_and_proba(model, data)

    def check_upload(self, files: dict[str, bytes], info: dict[str, Any]) -> dict[str, Any]:
        """The types the file holds are checked here, against an allow-list: the uploader
        cannot make a load trust anything else."""
        return _check_upload(self, files, info)

    def load(self, files: dict[str, bytes], info: dict[str, Any]) -> Any:
        skops_io()
        import skops.io
        from skops.io.exceptions import UntrustedTypesFoundException

        trusted = list(info.get("trusted_types", []))
        try:
            return skops.io.loads(files[FILE], trusted=trusted)
        except UntrustedTypesFoundException:
            skops_defaults()  # a file saved before every type was recorded, maybe
        try:
            return skops.io.loads(files[FILE], trusted=trusted)
        except UntrustedTypesFoundException as e:
            raise IntegrityError(
                f"The stored model holds types that were not recorded when it was saved ({e}); "
                "refusing to load it.",
                hint="Log the model again from trusted code.",
            ) from e


#: scikit-learn's forests, whose predictions are the mean of their trees' (for a classifier:
#: of the trees' class probabilities).
_FORESTS = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "RandomForestRegressor",
        "ExtraTreesRegressor",
    }
)


def _forest_mean(model: Any, data: Any) -> Any:
    """A forest's mean over its trees for ``data``, computed as scikit-learn does, or None.

    scikit-learn dispatches each tree through joblib, which sets its configuration and
    warning filters around every call: about 35 us a tree, 3.5 ms for 100 trees, four times
    what the trees themselves cost on a small batch. This calls each tree's public
    ``predict_proba``/``predict`` (``check_input=False``) in the forest's order on the
    float32 array scikit-learn would build, and sums in float64 in that order, so the
    result is the same to the bit as ``predict_proba``/``predict`` run sequentially.
    Anything else gets None and goes to the model's own methods: a subclass, several
    outputs, a DataFrame, sparse input, the wrong number of columns, or a value that is
    not finite (which scikit-learn refuses, or routes as missing).
    """
    import numpy as np

    kind = type(model)
    if kind.__name__ not in _FORESTS or kind.__module__ != "sklearn.ensemble._forest":
        return None
    trees = getattr(model, "estimators_", None)
    if not trees or getattr(model, "n_outputs_", None) != 1:
        return None
    if type(data) is not np.ndarray or data.ndim != 2 or data.shape[0] == 0:
        return None  # np.matrix, an empty batch...: scikit-learn's own checks and errors
    if data.shape[1] != getattr(model, "n_features_in_", None) or data.dtype.kind not in "biuf":
        return None
    X = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(X).all():
        return None
    out: Any
    if kind.__name__.endswith("Classifier"):
        out = np.zeros((X.shape[0], int(model.n_classes_)), dtype=np.float64)
        for tree in trees:
            out += tree.predict_proba(X, check_input=False)
    else:
        out = np.zeros(X.shape[0], dtype=np.float64)
        for tree in trees:
            out += tree.predict(X, check_input=False)
    out /= len(trees)
    return out


#: Types beyond skops's defaults that a skops file from someone else may hold: plain
#: containers, the estimators of XGBoost and LightGBM (scikit-learn's are skops defaults) and
#: the inner classes models keep, each checked to construct only from what it is given. A name
#: is trusted exactly, never by its package: skops calls a trusted name with arguments from the
#: file, and a package also holds functions (and classes whose constructors touch files).
#: Left out: classes whose index arrays a crafted file could point out of bounds and that are
#: not checked after loading (HistGradientBoosting's TreePredictor, the KD and ball trees of
#: nearest neighbours); scikit-learn's Tree is allowed because :func:`check_trees` checks it.
_SAFE_TYPES = frozenset(
    {
        *(
            f"builtins.{t}"
            for t in (
                "dict",
                "list",
                "str",
                "tuple",
                "int",
                "float",
                "bool",
                "bytes",
                "set",
                "frozenset",
                "complex",
                "slice",
                "NoneType",
            )
        ),
        "collections.OrderedDict",
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.calibration._TemperatureScaling",
        "sklearn.multiclass._ConstantPredictor",
        "xgboost.core.Booster",
        *(
            f"xgboost.sklearn.{c}"
            for c in (
                "XGBClassifier",
                "XGBRegressor",
                "XGBRanker",
                "XGBRFClassifier",
                "XGBRFRegressor",
            )
        ),
        "lightgbm.basic.Booster",
        *(f"lightgbm.sklearn.{c}" for c in ("LGBMClassifier", "LGBMRegressor", "LGBMRanker")),
    }
)


def foreign_type_allowed(type_name: str) -> bool:
    """Whether a skops file that someone else wrote may make a load trust ``type_name``."""
    return type_name in _SAFE_TYPES


def check_trees(model: Any) -> None:
    """Refuse a model holding a scikit-learn tree whose node arrays point outside it.

    scikit-learn does not check a loaded tree's children and feature indices before it walks
    them, so a crafted file could make a prediction read memory out of bounds (or loop). Each
    tree must have nodes; each internal node must point to later nodes within the tree (node
    ids grow depth first, so no cycle) and to a feature below the ``n_features_in_`` of the
    estimator that holds it (which scikit-learn checks the input against). A tree that no
    such estimator holds is refused: its own ``n_features`` comes from the same file.
    """
    import numpy as np
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    pending: list[tuple[Any, int | None]] = [(model, None)]
    while pending:
        obj, n_features = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tree):
            _check_tree(obj, n_features)
        elif isinstance(obj, dict):
            pending.extend((v, n_features) for v in (*obj.keys(), *obj.values()))
        elif isinstance(obj, list | tuple | set | frozenset):
            pending.extend((v, n_features) for v in obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                pending.extend((v, n_features) for v in obj.ravel())
        elif type(obj).__module__.split(".", 1)[0] in ("sklearn", "xgboost", "lightgbm"):
            held = getattr(obj, "__dict__", None)
            if isinstance(held, dict):
                inner = held.get("n_features_in_", n_features)
                takes = inner if isinstance(inner, int | np.integer) else n_features
                pending.extend((v, None if takes is None else int(takes)) for v in held.values())


def _check_tree(tree: Any, n_features: int | None) -> None:
    import numpy as np

    count = int(tree.node_count)
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    ids = np.arange(count)
    inner = left != -1
    fine = (
        count >= 1
        and n_features is not None
        and bool(np.all(~inner | ((left > ids) & (left < count) & (right > ids) & (right < count))))
        and bool(np.all(inner | (right == -1)))
        and bool(np.all(~inner | ((feature >= 0) & (feature < n_features))))
    )
    if not fine:
        raise IntegrityError(
            "The model holds a decision tree whose nodes point outside it (children or "
            "feature indices out of range, or no estimator that says what it takes): "
            "refusing to load it.",
            hint="Log the model again with scikit-learn.",
        )


def foreign_types(data: bytes) -> tuple[list[str], list[str]]:
    """The types beyond skops's defaults the skops file ``data`` holds: those a load may
    trust when someone else wrote it, and those it must not."""
    skops_defaults()
    import skops.io

    reported = sorted(set(skops.io.get_untrusted_types(data=data)))
    allowed = [t for t in reported if foreign_type_allowed(t)]
    return allowed, [t for t in reported if t not in allowed]


def _check_upload(
    flavor: SklearnFlavor, files: dict[str, bytes], info: dict[str, Any]
) -> dict[str, Any]:
    data = files.get(FILE)
    if data is None or set(files) != {FILE}:
        raise InvalidArgumentError(f"A scikit-learn model upload is one file, {FILE!r}.")
    try:
        allowed, refused = foreign_types(data)
    except Exception as e:  # noqa: BLE001 - any failure to read the file is the uploader's
        raise InvalidArgumentError(f"The uploaded file is not a skops model ({e}).") from None
    claimed = info.get("trusted_types", [])
    if not isinstance(claimed, list) or not all(isinstance(t, str) for t in claimed):
        raise InvalidArgumentError("info.trusted_types must be a list of type names.")
    if refused:
        raise PermissionDeniedError(
            "The uploaded model holds types a team server does not load: "
            f"{', '.join(refused[:5])}.",
            hint="Only scikit-learn, XGBoost and LightGBM estimators and the types skops "
            "trusts load from an upload; log models with other types where their store is.",
        )
    # Not what the uploader claims (ignored): what the file was found to hold.
    checked = {**info, "trusted_types": allowed}
    try:
        loaded = flavor.load(files, checked)
    except IntegrityError:
        raise
    except Exception as e:  # noqa: BLE001 - a file scikit-learn cannot rebuild is the uploader's
        raise InvalidArgumentError(f"The uploaded model cannot be loaded: {e}") from None
    check_trees(loaded)
    return checked


def _dumps(model: Any) -> tuple[bytes, list[str] | None]:
    """Return ``model`` in the skops format, and the types it holds when they can be told.

    skops writes its schema with ``json.dumps(indent=2)``, which runs the pure-Python encoder
    and is most of the time of saving a forest. The same schema written compactly (the
    C encoder) is the same document to skops' reader and several times faster. If skops'
    internals are not as expected, this falls back to the public ``skops.io.dumps``.
    """
    import io
    import json
    import zipfile

    import skops
    import skops.io

    try:
        from skops.io._utils import SaveContext, get_state
    except ImportError:  # pragma: no cover - a skops release that moved them
        return skops.io.dumps(model), None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        context = SaveContext(zip_file=archive)
        state = get_state(model, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        archive.writestr("schema.json", json.dumps(state, separators=(",", ":")))
    return buffer.getvalue(), sorted(_types_in(state))


def _types_in(state: Any) -> set[str]:
    found: set[str] = set()
    stack = [state]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                found.add(f"{module}.{cls}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _jsonable(values: Any) -> list[Any] | None:
    if values is None:
        return None
    try:
        return [v.item() if hasattr(v, "item") else v for v in list(values)]
    except (TypeError, ValueError):  # multi-output: one array of classes per output
        return None
