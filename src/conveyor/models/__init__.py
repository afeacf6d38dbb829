"""The model registry: log, load, aliases, approvals, comparison, events.

>>> import conveyor as cv
>>> sig = cv.models.infer_signature(X_train, model.predict(X_train))          # doctest: +SKIP
>>> mv = cv.models.log(model, name="churn", input_example=X_train[:5])         # doctest: +SKIP
>>> cv.models.set_alias("churn", "champion", version=mv.version)               # doctest: +SKIP
>>> cv.models.load("churn@champion").predict(X_test)                          # doctest: +SKIP

References: ``churn/3`` (a version), ``churn@champion`` (an alias), ``churn@latest`` or
``churn`` (the newest). Each function works on the workspace in use (``cv.init``), or on
``workspace=`` if given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.models.flavors.python import PythonModel

if TYPE_CHECKING:
    from conveyor.models.evaluation import Evaluation
    from conveyor.models.events import RegistryEvent
    from conveyor.models.loaded import LoadedModel
    from conveyor.models.records import (
        AliasMove,
        ModelVersion,
        PromotionRequest,
        RegisteredModel,
    )
    from conveyor.models.service import ModelService
    from conveyor.models.signature import ColumnSpec, Signature, SignatureError, infer_signature
    from conveyor.store.workspace import Workspace

__all__ = [
    "ColumnSpec",
    "PythonModel",
    "Signature",
    "SignatureError",
    "alias_history",
    "approve",
    "card",
    "compare",
    "delete_alias",
    "evaluate",
    "evaluations",
    "export",
    "get",
    "import_mlflow",
    "infer_signature",
    "input_example",
    "list",
    "load",
    "log",
    "reject",
    "request",
    "request_promotion",
    "requests",
    "require_approval",
    "set_alias",
    "subscribe",
    "versions",
    "withdraw",
]

_list = list
_SIGNATURE_NAMES = {"ColumnSpec", "Signature", "SignatureError", "infer_signature"}


def __getattr__(name: str) -> Any:
    # Signatures need pandas and NumPy: imported on first use, so `cv.models` stays light.
    if name in _SIGNATURE_NAMES:
        from conveyor.models import signature

        return getattr(signature, name)
    raise AttributeError(f"module 'conveyor.models' has no attribute {name!r}")


def _svc(workspace: Workspace | None) -> ModelService:
    from conveyor.models.service import model_service

    return model_service(workspace)


def log(
    model: Any,
    name: str,
    *,
    signature: Signature | dict[str, Any] | None = None,
    input_example: Any = None,
    description: str = "",
    flavor: str | None = None,
    features: Sequence[str] | None = None,
    workspace: Workspace | None = None,
) -> ModelVersion:
    """Store ``model`` and register it as the next version of ``name``.

    The flavor is picked from the model (scikit-learn, XGBoost, LightGBM, PythonModel) unless
    ``flavor`` names one. Inside a run, the version records the run that produced it. Without
    ``signature``, one is inferred from ``input_example`` and the model's output on it.
    ``features`` names the feature-store features the model takes (``view:feature``): a model
    server then accepts entity keys instead and reads those features online.
    """
    return _svc(workspace).log(
        model,
        name,
        signature=signature,
        input_example=input_example,
        description=description,
        flavor=flavor,
        features=features,
    )


def load(ref: str, *, trust: bool = False, workspace: Workspace | None = None) -> LoadedModel:
    """Load a version (``churn@champion``, ``churn/3``, ``churn``), verified against its digest.

    Pickle-based flavors (PythonModel) need ``trust=True``: loading them runs code.
    """
    return _svc(workspace).load(ref, trust=trust)


def get(
    ref: str, *, at: datetime | str | None = None, workspace: Workspace | None = None
) -> ModelVersion:
    """Return the version ``ref`` names; with ``at``, an alias as it stood at that time."""
    return _svc(workspace).get(ref, at=at)


def versions(name: str, *, workspace: Workspace | None = None) -> _list[ModelVersion]:
    """Return the versions of model ``name``, newest first."""
    return _svc(workspace).versions(name)


def list(*, workspace: Workspace | None = None) -> _list[RegisteredModel]:
    """Return the project's registered models, sorted by name."""
    return _svc(workspace).list_models()


def input_example(ref: str, *, workspace: Workspace | None = None) -> Any:
    """Return the input example stored with a version (None when it has none)."""
    return _svc(workspace).input_example(ref)


def set_alias(
    name: str,
    alias: str,
    version: int,
    *,
    request_id: str | None = None,
    workspace: Workspace | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version`` atomically; the previous holder is recorded. A protected
    alias moves with the approved deferred request ``request_id`` (see request_promotion)."""
    return _svc(workspace).set_alias(name, alias, version, request_id=request_id)


def delete_alias(name: str, alias: str, *, workspace: Workspace | None = None) -> AliasMove:
    """Remove an alias from a model (recorded in its history)."""
    return _svc(workspace).delete_alias(name, alias)


def alias_history(
    name: str, alias: str | None = None, *, workspace: Workspace | None = None
) -> _list[AliasMove]:
    """Every move of ``alias`` (or of all aliases) of ``name``, oldest first."""
    return _svc(workspace).alias_history(name, alias)


def require_approval(
    name: str,
    aliases: _list[str] | tuple[str, ...] = ("champion", "production"),
    *,
    change: str = "set",
    workspace: Workspace | None = None,
) -> RegisteredModel:
    """Protect ``aliases`` of ``name``: they then move only through approved requests.

    ``change="set"`` protects exactly ``aliases`` (``[]``: none), ``"add"`` these too,
    ``"remove"`` releases these and keeps the others.
    """
    return _svc(workspace).require_approval(name, aliases, change=change)


def request_promotion(
    ref: str,
    alias: str,
    *,
    comment: str = "",
    deferred: bool = False,
    workspace: Workspace | None = None,
) -> PromotionRequest:
    """Ask for ``alias`` to point at ``ref``; automatic checks are attached. ``deferred``:
    approval does not move the alias; the requester does, later, with the request's id."""
    return _svc(workspace).request_promotion(ref, alias, comment=comment, deferred=deferred)


def approve(
    request_id: str,
    *,
    comment: str = "",
    override_checks: bool = False,
    workspace: Workspace | None = None,
) -> PromotionRequest:
    """Approve a pending promotion request: its alias moves in the same transaction (a
    deferred request's alias moves later, when its requester moves it). A request that
    failed a check needs ``override_checks=True`` and a comment saying why."""
    return _svc(workspace).approve(request_id, comment=comment, override_checks=override_checks)


def reject(
    request_id: str, *, comment: str = "", workspace: Workspace | None = None
) -> PromotionRequest:
    """Reject a pending promotion request."""
    return _svc(workspace).reject(request_id, comment=comment)


def withdraw(
    request_id: str, *, comment: str = "", workspace: Workspace | None = None
) -> PromotionRequest:
    """Withdraw your own promotion request while it is pending (or approved for later and
    not yet used); nobody else may."""
    return _svc(workspace).withdraw(request_id, comment=comment)


def requests(
    name: str | None = None, *, status: str | None = None, workspace: Workspace | None = None
) -> _list[PromotionRequest]:
    """Return promotion requests, newest first (of ``name``; with ``status``)."""
    return _svc(workspace).requests(name, status=status)


def compare(a: str, b: str, *, workspace: Workspace | None = None) -> dict[str, Any]:
    """Compare two versions: params, metrics, data versions, signature, requirements."""
    return _svc(workspace).compare(a, b)


def subscribe(
    callback: Callable[[RegistryEvent], Any],
    kinds: _list[str] | None = None,
    *,
    workspace: Workspace | None = None,
) -> Callable[[], None]:
    """Call ``callback`` with each registry event (of ``kinds``); returns an unsubscribe."""
    return _svc(workspace).events.subscribe(callback, kinds)


def evaluate(
    ref: str,
    data: Any,
    *,
    target: str,
    slices: _list[str] | None = None,
    sensitive: _list[str] | None = None,
    task: str | None = None,
    importance: bool = True,
    trust: bool = False,
    workspace: Workspace | None = None,
) -> Evaluation:
    """Evaluate a version on labelled data (``"customers@4"`` or a DataFrame); stored.

    Task metrics (overall and per value of each ``slices`` column), group fairness for each
    ``sensitive`` column, and permutation feature importance.
    """
    return _svc(workspace).evaluate(
        ref,
        data,
        target=target,
        slices=slices,
        sensitive=sensitive,
        task=task,
        importance=importance,
        trust=trust,
    )


def evaluations(ref: str, *, workspace: Workspace | None = None) -> _list[Evaluation]:
    """Return the evaluations of a version, newest first."""
    return _svc(workspace).evaluations(ref)


def card(ref: str, *, format: str = "markdown", workspace: Workspace | None = None) -> str:
    """Return a version's model card as Markdown (or ``format="html"``)."""
    return _svc(workspace).card(ref, format=format)


def import_mlflow(
    path: str, name: str, *, trust: bool = False, workspace: Workspace | None = None
) -> ModelVersion:
    """Register an MLflow model folder (sklearn flavor) as the next version of ``name``.

    Reading its pickle runs code, so it needs ``trust=True``; it is stored again with skops.
    """
    return _svc(workspace).import_mlflow(path, name, trust=trust)


def export(
    ref: str,
    *,
    format: str = "onnx",
    path: str | None = None,
    register: str | None = None,
    workspace: Workspace | None = None,
) -> dict[str, Any]:
    """Convert a scikit-learn version to ONNX, checked to predict the same on its example.

    Writes it to ``path`` and/or logs it as a version of ``register`` (flavor onnx).
    """
    return _svc(workspace).export(ref, format=format, path=path, register=register)


def request(request_id: str, *, workspace: Workspace | None = None) -> PromotionRequest:
    """Return the promotion request ``request_id`` with its checks and decision."""
    return _svc(workspace).request(request_id)
