"""Model signatures: the columns (or tensor) a model takes and what it returns.

A signature is inferred from training data and predictions, stored with every model version,
and checked when the model is called: missing columns, wrong types and unexpected missing
values are reported per field, in one error, before the model sees the data.

>>> import pandas as pd
>>> sig = infer_signature(pd.DataFrame({"age": [31, 45], "plan": ["a", "b"]}), [0, 1])
>>> [(c.name, c.dtype) for c in sig.inputs]
[('age', 'int64'), ('plan', 'string')]
>>> sig.problems(pd.DataFrame({"age": [1.5]}))
["column 'age': expected int64, got float64", "column 'plan': missing"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ColumnSpec",
    "Signature",
    "SignatureError",
    "infer_signature",
    "tensor_problems",
    "to_frame_or_array",
]

_FORMAT = "conveyor.signature/1"


class SignatureError(InvalidArgumentError):
    """Input that does not match a model's signature; ``problems`` lists each field's fault."""

    def __init__(self, message: str, problems: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One input or output: a named column, or (``name`` None) a tensor with a shape."""

    name: str | None
    dtype: str
    nullable: bool = False
    shape: tuple[int, ...] | None = None  # tensors only; -1 is any size

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnSpec:
        shape = data.get("shape")
        return cls(
            name=data.get("name"),
            dtype=str(data["dtype"]),
            nullable=bool(data.get("nullable", False)),
            shape=tuple(int(n) for n in shape) if shape is not None else None,
        )

    def describe(self) -> str:
        text = f"{self.name}: {self.dtype}" if self.name is not None else f"tensor {self.dtype}"
        if self.shape is not None:
            text += f" {list(self.shape)}"
        return text + (" (nullable)" if self.nullable else "")


@dataclass(frozen=True, slots=True)
class Signature:
    """The inputs a model takes and the outputs it returns."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = field(default=())

    @property
    def is_tensor(self) -> bool:
        """True when the model takes one array rather than named columns."""
        return len(self.inputs) == 1 and self.inputs[0].name is None

    @property
    def columns(self) -> list[str]:
        """The input column names, in order (empty for a tensor signature)."""
        return [c.name for c in self.inputs if c.name is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [c.to_dict() for c in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        try:
            return cls(
                inputs=tuple(ColumnSpec.from_dict(c) for c in data["inputs"]),
                outputs=tuple(ColumnSpec.from_dict(c) for c in data.get("outputs", [])),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgumentError(
                f"Cannot read a signature from {str(data)[:200]!r}: {e}.",
                hint="A signature is {'inputs': [{'name', 'dtype', 'nullable'}...], 'outputs': "
                "[...]}; infer one with cv.models.infer_signature(X, y).",
            ) from e

    # -- checking ----------------------------------------------------------------------------

    def problems(self, data: Any) -> list[str]:
        """Return what is wrong with ``data`` as input to this signature (empty: nothing)."""
        return self._prepare(data)[1]

    def prepare(self, data: Any) -> Any:
        """Return ``data`` ready for the model: columns selected and ordered as signed.

        Raises :class:`SignatureError` listing every problem when ``data`` does not fit.
        """
        prepared, problems = self._prepare(data)
        if problems:
            shown = "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else "")
            raise SignatureError(
                f"The input does not match the model's signature: {shown}.",
                problems,
                hint="The model takes: "
                + ", ".join(c.describe() for c in self.inputs[:12])
                + (f" and {len(self.inputs) - 12} more" if len(self.inputs) > 12 else "")
                + ".",
            )
        return prepared

    def _prepare(self, data: Any) -> tuple[Any, list[str]]:
        import pandas as pd

        data = to_frame_or_array(data, columns=self.columns or None)
        if self.is_tensor:
            return data, tensor_problems(self.inputs[0], data)
        if not isinstance(data, pd.DataFrame):
            array = np.asarray(data)
            if array.ndim == 2 and array.shape[1] == len(self.inputs):
                data = pd.DataFrame(array, columns=self.columns)
            else:
                return data, [
                    f"expected a table with columns {', '.join(self.columns)}; "
                    f"got an array of shape {list(array.shape)}"
                ]
        problems: list[str] = []
        for spec in self.inputs:
            if spec.name not in data.columns:
                problems.append(f"column {spec.name!r}: missing")
                continue
            column = data[spec.name]
            problem = _column_problem(spec, column)
            if problem:
                problems.append(f"column {spec.name!r}: {problem}")
        if problems:
            return data, problems
        return data[self.columns], []

    def diff(self, other: Signature) -> list[str]:
        """Describe how ``other``'s inputs and outputs differ from these (empty: compatible)."""
        changes: list[str] = []
        for label, mine, theirs in (
            ("input", self.inputs, other.inputs),
            ("output", self.outputs, other.outputs),
        ):
            a = {c.name: c for c in mine}
            b = {c.name: c for c in theirs}
            for name in a.keys() - b.keys():
                changes.append(f"{label} {name!r} removed")
            for name in b.keys() - a.keys():
                changes.append(f"{label} {name!r} added")
            for name in a.keys() & b.keys():
                if a[name] != b[name]:
                    changes.append(f"{label} {a[name].describe()} -> {b[name].describe()}")
        return sorted(changes)


def _dtype_name(dtype: Any) -> str:
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if isinstance(dtype, pd.StringDtype) or dtype == object:  # noqa: E721
        return "string"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "datetime64[ns, tz]"
    if getattr(dtype, "kind", None) == "M":
        return "datetime64[ns]"
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return str(getattr(dtype, "numpy_dtype", dtype)).lower()
    return str(np.dtype(dtype))


def _kind(name: str) -> str:
    if name in ("string", "category") or name.startswith("datetime"):
        return name.split("[")[0]
    if name == "bool":
        return "bool"
    if name.startswith(("int", "uint")):
        return "int"
    if name.startswith("float"):
        return "float"
    return name


def _compatible(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    want, got = _kind(expected), _kind(actual)
    if want == got:
        return True
    # Safe widenings: integers and booleans to floats, booleans to integers,
    # strings to categories and back.
    return (
        (want == "float" and got in ("int", "bool"))
        or (want == "int" and got == "bool")
        or {want, got} == {"string", "category"}
    )


def _column_problem(spec: ColumnSpec, column: pd.Series) -> str | None:
    actual = _dtype_name(column.dtype)
    if not _compatible(spec.dtype, actual):
        return f"expected {spec.dtype}, got {actual}"
    if not spec.nullable:
        missing = int(column.isna().sum())
        if missing:
            return (
                f"{missing} missing value(s), but the model was signed with none "
                "(fill them, or sign it with nullable=True)"
            )
    return None


def tensor_problems(spec: ColumnSpec, data: Any) -> list[str]:
    """What is wrong with ``data`` as the tensor ``spec`` describes (empty: nothing)."""
    array = np.asarray(data)
    problems: list[str] = []
    actual = _dtype_name(array.dtype)
    if not _compatible(spec.dtype, actual):
        problems.append(f"tensor: expected {spec.dtype}, got {actual}")
    if spec.shape is not None:
        if array.ndim != len(spec.shape):
            problems.append(
                f"tensor: expected {len(spec.shape)} dimensions {list(spec.shape)}, "
                f"got {array.ndim} {list(array.shape)}"
            )
        else:
            for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
                if want != -1 and want != got:
                    problems.append(f"tensor: dimension {axis} must be {want}, got {got}")
    if not spec.nullable and array.dtype.kind == "f" and np.isnan(array).any():
        problems.append("tensor: holds NaN, but the model was signed with no missing values")
    return problems


def to_frame_or_array(data: Any, *, columns: list[str] | None = None) -> Any:
    """Turn lists, dicts, Series and Arrow tables into a DataFrame; leave arrays as arrays."""
    import pandas as pd

    if isinstance(data, pd.DataFrame | np.ndarray):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, dict):
        return pd.DataFrame(data)
    if hasattr(data, "to_pandas"):  # pyarrow.Table, polars.DataFrame
        return data.to_pandas()
    if isinstance(data, list):
        if data and isinstance(data[0], dict):
            return pd.DataFrame(data)
        if columns is not None:
            return pd.DataFrame(data, columns=columns)
        return np.asarray(data)
    raise InvalidArgumentError(
        f"Cannot use a {type(data).__name__} as model input: give a pandas DataFrame, a NumPy "
        "array, a list of records or a dict of columns."
    )


def _specs(data: Any, *, role: str) -> tuple[ColumnSpec, ...]:
    import pandas as pd

    if isinstance(data, pd.Series):
        data = data.to_numpy() if data.name is None else data.to_frame()
    elif isinstance(data, list | tuple):
        data = np.asarray(data)
    data = to_frame_or_array(data)
    if isinstance(data, pd.DataFrame):
        return tuple(
            ColumnSpec(
                name=str(name),
                dtype=_dtype_name(data[name].dtype),
                nullable=bool(data[name].isna().any()),
            )
            for name in data.columns
        )
    array = np.asarray(data)
    if array.ndim == 0:
        raise InvalidArgumentError(f"Cannot infer a signature {role} from a scalar.")
    nullable = bool(array.dtype.kind == "f" and np.isnan(array).any())
    return (
        ColumnSpec(
            name=None,
            dtype=_dtype_name(array.dtype),
            nullable=nullable,
            shape=(-1, *array.shape[1:]),
        ),
    )


def infer_signature(model_input: Any, model_output: Any = None) -> Signature:
    """Infer a signature from example input (and, optionally, the model's output on it).

    A DataFrame gives named columns with their dtypes and whether they hold missing values;
    an array gives one tensor whose first dimension is any size.
    """
    inputs = _specs(model_input, role="input")
    outputs = _specs(model_output, role="output") if model_output is not None else ()
    return Signature(inputs=inputs, outputs=outputs)
