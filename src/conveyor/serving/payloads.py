"""Request bodies to model input: parse, check against the signature, and say exactly what is wrong.

Three shapes are accepted, all turned into one column-ordered block:

- records: ``{"instances": [{"age": 31, "plan": "a"}, ...]}``
- split: ``{"columns": ["age", "plan"], "data": [[31, "a"], ...]}`` (also ``instances`` as rows)
- Open Inference Protocol v2: ``{"inputs": [{"name": "age", "shape": [2], "datatype": "INT64",
  "data": [31, 45]}, ...]}`` (one tensor per column, as MLServer's pandas codec does)

A block is a 2-D float64 array when every input is numeric (the fast path: pandas is not even
imported, so a model server of a numeric model runs without it), else a DataFrame. Every
fault names the column and the first bad row.

>>> from conveyor.models.signature import ColumnSpec, Signature
>>> sig = Signature((ColumnSpec("age", "int64"), ColumnSpec("income", "float64")))
>>> parser = InputParser(sig)
>>> parser.parse({"instances": [{"age": 31, "income": 2.5}]}).rows
1
>>> try:
...     parser.parse({"instances": [{"age": "old", "income": 2.5}]})
... except PayloadError as e:
...     print(e)
column 'age', row 0: expected a number (int64), got the string 'old'
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.models.signature import ColumnSpec, Signature

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "V2_DATATYPES",
    "Block",
    "InputParser",
    "PayloadError",
    "check_float32_range",
    "check_unique_keys",
    "concat_blocks",
]

# Open Inference Protocol datatypes for each signature dtype kind.
V2_DATATYPES = {
    "bool": "BOOL",
    "int": "INT64",
    "float": "FP64",
    "string": "BYTES",
    "category": "BYTES",
    "datetime64": "BYTES",
}


class PayloadError(ValueError):
    """A request body that cannot be used as model input; the message names the field."""

    def __init__(self, message: str, *, status: int = 422, problems: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.problems = problems or [message]


@dataclass(slots=True)
class Block:
    """Validated input for one request: ``data`` is a float64 array or a DataFrame."""

    data: Any
    rows: int
    dropped: tuple[str, ...] = ()


def _kind(dtype: str) -> str:
    if dtype in ("string", "category") or dtype.startswith("datetime"):
        return dtype.split("[")[0]
    if dtype == "bool":
        return "bool"
    if dtype.startswith(("int", "uint")):
        return "int"
    if dtype.startswith("float"):
        return "float"
    return "other"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, list | dict):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    return f"{type(value).__name__} {value!r}"


class InputParser:
    """Parses request bodies for one signature. Made once per model, used per request."""

    def __init__(self, signature: Signature | None, *, extra: str = "reject") -> None:
        if extra not in ("reject", "drop"):
            raise ValueError(f"extra must be 'reject' or 'drop', not {extra!r}")
        self.signature = signature
        self.extra = extra
        #: The one tensor a model signed from an array takes (None: columns, or no signature).
        self.tensor = signature.inputs[0] if signature is not None and signature.is_tensor else None
        specs = signature.inputs if signature is not None and not signature.is_tensor else ()
        self.specs: tuple[ColumnSpec, ...] = tuple(specs)
        self.columns = [s.name for s in self.specs if s.name is not None]
        self._index = {name: i for i, name in enumerate(self.columns)}
        self.kinds = [_kind(s.dtype) for s in self.specs]
        self.numeric = bool(self.specs) and all(k in ("int", "float", "bool") for k in self.kinds)

    # -- entry points -----------------------------------------------------------------------

    def parse(self, body: Any) -> Block:
        """Return the validated block for a v1 body (``instances`` or ``columns`` + ``data``)."""
        if not isinstance(body, dict):
            raise PayloadError(
                'The body must be a JSON object: {"instances": [{...}, ...]} or '
                '{"columns": [...], "data": [[...], ...]}.',
                status=400 if body is None else 422,
            )
        if self.tensor is not None and isinstance(body.get("instances", body.get("data")), list):
            field = "instances" if "instances" in body else "data"
            return self._tensor_rows(body[field], field)
        if "instances" in body:
            rows = body["instances"]
            if not isinstance(rows, list) or not rows:
                raise PayloadError('"instances" must be a non-empty list of records.')
            if isinstance(rows[0], dict):
                return self._records(rows)
            return self._split(self.columns, rows, "instances")
        if "data" in body:
            columns = body.get("columns", self.columns)
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise PayloadError('"columns" must be a list of column names.')
            twice = sorted(name for name, n in Counter(columns).items() if n > 1)
            if twice:  # which value would the model get? Neither: say so
                raise PayloadError(f'"columns" names {", ".join(map(repr, twice))} twice.')
            rows = body["data"]
            if not isinstance(rows, list) or not rows:
                raise PayloadError('"data" must be a non-empty list of rows.')
            return self._split(columns, rows, "data")
        keys = ", ".join(repr(k) for k in list(body)[:5]) or "none"
        raise PayloadError(
            f'The body needs "instances" (a list of records) or "data" (rows, with "columns"); '
            f"it has keys {keys}."
        )

    def parse_v2(self, body: Any) -> Block:
        """Return the validated block for an Open Inference Protocol v2 ``infer`` body."""
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise PayloadError(
                'A v2 infer body is {"inputs": [{"name", "shape", "datatype", "data"}, ...]}.',
                status=400 if not isinstance(body, dict) else 422,
            )
        columns: dict[str, list[Any]] = {}
        for i, tensor in enumerate(body["inputs"]):
            if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
                raise PayloadError(f"inputs[{i}] must be an object with a name.")
            data = tensor.get("data")
            if not isinstance(data, list):
                raise PayloadError(f"input {tensor['name']!r}: data must be a list.")
            if data and isinstance(data[0], list):  # shape [n, 1]
                data = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
            shape = tensor.get("shape")
            if (
                isinstance(shape, list)
                and shape
                and isinstance(shape[0], int)
                and shape[0] != len(data)
            ):
                raise PayloadError(
                    f"input {tensor['name']!r}: shape {shape} says {shape[0]} rows, "
                    f"data has {len(data)}."
                )
            if tensor["name"] in columns:
                raise PayloadError(f"inputs name {tensor['name']!r} twice.")
            columns[tensor["name"]] = data
        return self._columns(columns)

    # -- shapes -----------------------------------------------------------------------------

    def _check_names(self, names: list[str]) -> list[str]:
        """Return the names to drop; raise for missing names (and extras under 'reject')."""
        if not self.columns:
            return []
        missing = [c for c in self.columns if c not in names]
        extras = [c for c in names if c not in self._index]
        problems = [f"column {c!r}: missing" for c in missing]
        if extras and self.extra == "reject":
            problems += [f"column {c!r}: not an input of this model" for c in extras]
        if problems:
            raise PayloadError(
                "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""),
                problems=problems,
            )
        return extras

    def _records(self, rows: list[Any]) -> Block:
        if not self.columns:
            return self._untyped(_frame(rows))
        first = rows[0]
        dropped = self._check_names(list(first))
        n = len(first) - len(dropped)
        for r, row in enumerate(rows):
            if not isinstance(row, dict):
                raise PayloadError(f"instances[{r}] must be a record (a JSON object).")
            if len(row) != n + len(dropped) or (r and row.keys() != first.keys()):
                missing = [c for c in self.columns if c not in row]
                if missing:
                    raise PayloadError(
                        f"column {missing[0]!r}, row {r}: missing",
                        problems=[f"column {c!r}, row {r}: missing" for c in missing],
                    )
                self._check_names(list(row))
        columns = {c: [row[c] for row in rows] for c in self.columns}
        return self._columns(columns, dropped=tuple(dropped))

    def _split(self, names: list[str], rows: list[Any], field: str) -> Block:
        if not self.columns:
            return self._untyped(_frame(rows, names or None))
        dropped = self._check_names(names)
        width = len(names)
        if self.numeric and not dropped and names == self.columns:
            # The fast path: one NumPy conversion. Only numbers (and booleans, a safe
            # widening) give a numeric dtype; a string or null anywhere gives another kind,
            # and the slow path below finds and names it.
            try:
                array = np.asarray(rows)
            except ValueError:
                array = None  # ragged
            if (
                array is not None
                and array.dtype.kind in "fiub"
                and array.ndim == 2
                and array.shape[1] == width
                and self._integers_ok(array)
            ):
                return Block(array.astype(np.float64, copy=False), len(rows))
        for r, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != width:
                got = f"{len(row)} values" if isinstance(row, list) else _describe(row)
                raise PayloadError(
                    f"{field}[{r}]: expected a row of {width} values ({', '.join(names[:8])}"
                    f"{', ...' if width > 8 else ''}), got {got}."
                )
        columns = {name: [row[j] for row in rows] for j, name in enumerate(names)}
        return self._columns(columns, dropped=tuple(dropped))

    def _integers_ok(self, array: np.ndarray) -> bool:
        """Integer columns hold whole numbers, boolean ones only 0 and 1 (else: slow path)."""
        if array.dtype.kind == "b":
            return True
        for j, kind in enumerate(self.kinds):
            column = array[:, j]
            if kind == "int" and array.dtype.kind == "f":
                if not np.array_equal(column, np.floor(column)):
                    return False
            elif kind == "bool" and not np.isin(column, (0, 1)).all():
                return False
        return True

    def _columns(self, columns: dict[str, list[Any]], dropped: tuple[str, ...] = ()) -> Block:
        if not self.columns:
            return self._untyped(_frame(columns))
        if not dropped:
            dropped = tuple(self._check_names(list(columns)))
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise PayloadError(
                "Columns have different lengths: "
                + ", ".join(f"{k}={len(v)}" for k, v in list(columns.items())[:8])
            )
        rows = lengths.pop() if lengths else 0
        if rows == 0:
            raise PayloadError("The request holds no rows.")
        problems: list[str] = []
        converted: list[Any] = []
        for spec, kind in zip(self.specs, self.kinds, strict=True):
            assert spec.name is not None
            values, problem = _convert(spec, kind, columns[spec.name])
            if problem:
                problems.append(f"column {spec.name!r}, {problem}")
            converted.append(values)
        if problems:
            raise PayloadError(
                "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""),
                problems=problems,
            )
        if self.numeric:
            return Block(np.column_stack(converted).astype(np.float64, copy=False), rows, dropped)
        import pandas as pd

        frame = pd.DataFrame(dict(zip(self.columns, converted, strict=True)))
        return Block(frame, rows, dropped)

    def _tensor_rows(self, rows: list[Any], field: str) -> Block:
        """Rows for a model that takes one tensor, checked against its dtype and shape."""
        from conveyor.models.signature import tensor_problems

        assert self.tensor is not None
        wanted = self.tensor.describe()
        if not rows:
            raise PayloadError(f'"{field}" must be a non-empty list of rows ({wanted}).')
        try:
            array = np.asarray(rows)
        except ValueError:  # ragged
            raise PayloadError(
                f'"{field}": the rows are not all of one length; the model takes {wanted}.'
            ) from None
        if array.dtype.kind not in "fiub":
            raise PayloadError(f'"{field}" must hold numbers only; the model takes {wanted}.')
        problems = tensor_problems(self.tensor, array)
        if problems:
            raise PayloadError(
                f"The input does not match the model's signature ({wanted}): {problems[0]}.",
                problems=problems,
            )
        return Block(array, len(array))

    def _untyped(self, frame: pd.DataFrame) -> Block:
        if frame.empty:
            raise PayloadError("The request holds no rows.")
        return Block(frame, len(frame))


_NUMBER = (int, float)


def _frame(data: Any, columns: list[str] | None = None) -> pd.DataFrame:
    """A DataFrame for a model without a signature; input pandas cannot tabulate is a 422."""
    import pandas as pd

    try:
        return pd.DataFrame(data, columns=columns)
    except (ValueError, TypeError) as e:
        raise PayloadError(f"The rows do not form a table: {e}.") from e


def _convert(spec: ColumnSpec, kind: str, values: list[Any]) -> tuple[Any, str | None]:
    """Return the column as an array of the signed type, or the first fault found."""
    if kind in ("int", "float", "bool"):
        try:
            array = np.asarray(values)
        except ValueError:  # ragged nested lists: the loop below names the row
            array = np.asarray([None])
        if array.ndim != 1:  # nested lists: the loop below names the row
            array = np.asarray([None])
        if array.dtype.kind in "iuf" and kind != "bool":
            if kind == "int" and array.dtype.kind == "f":
                bad = np.flatnonzero(np.isnan(array) | (array != np.floor(array)))
                if len(bad) and not (spec.nullable and np.isnan(array[bad]).all()):
                    r = int(bad[0])
                    return None, f"row {r}: expected an integer ({spec.dtype}), got {values[r]!r}"
            return array.astype(np.float64, copy=False), None
        if array.dtype.kind == "b":  # booleans: for bool columns, and a safe widening
            return array.astype(np.float64), None
        for r, v in enumerate(values):
            if v is None:
                if not spec.nullable:
                    return None, f"row {r}: null, but the model takes no missing values here"
                continue
            ok = isinstance(v, bool) if kind == "bool" else isinstance(v, _NUMBER)
            if not ok:
                want = "true or false" if kind == "bool" else f"a number ({spec.dtype})"
                return None, f"row {r}: expected {want}, got {_describe(v)}"
            if kind == "int" and isinstance(v, float) and not v.is_integer():
                return None, f"row {r}: expected an integer ({spec.dtype}), got {v!r}"
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64), None
    # strings, categories, datetimes
    import pandas as pd

    for r, v in enumerate(values):
        if v is None:
            if not spec.nullable:
                return None, f"row {r}: null, but the model takes no missing values here"
        elif not isinstance(v, str):
            if kind == "datetime64" and (
                (isinstance(v, int | float) and not isinstance(v, bool)) or isinstance(v, date)
            ):  # epoch numbers; datetimes (a timestamp feature the server read online)
                continue
            return None, f"row {r}: expected a string ({spec.dtype}), got {_describe(v)}"
    if kind == "datetime64":
        try:
            return pd.to_datetime(pd.Series(values)), None
        except (ValueError, TypeError) as e:
            return None, f"not a date-time: {e}"
    if kind == "category":
        return pd.Series(values, dtype="category"), None
    return pd.Series(values, dtype=object), None


#: The largest finite float32. A model that computes in float32 cannot take a value past it.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(block: Block, columns: list[str]) -> None:
    """Raise a 422 when a value of ``block`` lies past float32's range (about ±3.4e38), for a
    model that computes in float32: scikit-learn's trees refuse such input (which would be
    a 500), and an ONNX graph would turn it into infinity without a word.

    >>> check_float32_range(Block(np.array([[1.0, 2e38]]), 1), ["a", "b"])
    >>> try:
    ...     check_float32_range(Block(np.array([[1.0, -1e39]]), 1), ["a", "b"])
    ... except PayloadError as e:
    ...     print(e)
    column 'b', row 0: -1e+39 is past the float32 range this model computes in (±3.4e+38).
    """
    data = block.data
    if isinstance(data, np.ndarray):
        named = list(zip(columns, data.T, strict=False)) if data.dtype.kind == "f" else []
    else:
        named = [(str(c), data[c].to_numpy()) for c in data.columns if data[c].dtype.kind == "f"]
    for name, values in named:
        past = np.flatnonzero(np.abs(values) > FLOAT32_MAX)
        if past.size:
            row = int(past[0])
            raise PayloadError(
                f"column {name!r}, row {row}: {values[row]:g} is past the float32 range this "
                f"model computes in (±{FLOAT32_MAX:.2g})."
            )


def check_unique_keys(raw: bytes, body: Any) -> None:
    """Raise a 422 when a JSON object of the request ``raw`` (parsed as ``body``) repeats a key.

    A JSON parser keeps a repeated key's last value, so ``{"a": 1, "a": 2}`` would reach the
    model as ``a = 2``, silently: like a column named twice in ``"columns"``, it is refused.
    The check costs a byte count on the fast path: every key of the body is followed by one
    colon (after a quote, or blanks), so when ``raw`` holds no more colons than the parsed
    objects hold keys, no key was repeated; colons inside strings (times of day) rarely
    follow a quote, so counting only those that do settles most of the rest. Only a body
    still in doubt is parsed again, by the standard library, which sees every pair.

    >>> check_unique_keys(b'{"instances": [{"a": 1}]}', {"instances": [{"a": 1}]})
    >>> try:
    ...     check_unique_keys(b'{"instances": [{"a": 1, "a": 2}]}', {"instances": [{"a": 2}]})
    ... except PayloadError as e:
    ...     print(e)
    instances[0] names 'a' twice; give each key once (JSON keeps only the last value).
    """
    keys = _keys(body)
    if _colons(raw) <= keys:
        return
    ends = _key_ends(raw)
    if ends <= keys or ends <= _all_keys(body):
        return
    repeats: list[_Pairs] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        made = dict(items)
        if len(made) == len(items):
            return made
        counts = Counter(key for key, _ in items)
        repeated = _Pairs(made)
        repeated.twice = sorted(key for key, n in counts.items() if n > 1)
        repeats.append(repeated)
        return repeated

    try:
        paired = json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # orjson took it (1,024 levels deep), json cannot
        raise PayloadError(
            "The body could not be checked for keys given twice: it nests too deeply.",
            problems=["nest the body less deeply (a few hundred levels at most)"],
        ) from None
    if not repeats:
        return
    found = _first_repeat(paired, "")
    if found is not None:
        where, twice = found
        names = ", ".join(map(repr, twice))
        raise PayloadError(
            f"{where or 'The body'} names {names} twice; give each key once "
            "(JSON keeps only the last value)."
        )


# Bytes a JSON key's colon can follow: the key's closing quote, or blanks after it.
_BEFORE_COLON = np.zeros(256, dtype=bool)
_BEFORE_COLON[list(b'" \t\n\r')] = True


def _colons(raw: bytes) -> int:
    if len(raw) < 4096:  # bytes.count is quicker on small bodies, NumPy on large ones
        return raw.count(b":")
    return int(np.count_nonzero(np.frombuffer(raw, dtype=np.uint8) == ord(":")))


def _key_ends(raw: bytes) -> int:
    """How many colons follow a quote or a blank: at least the number of keys in ``raw``."""
    data = np.frombuffer(raw, dtype=np.uint8)  # a colon at 0 is not JSON: orjson refused it
    return int(np.count_nonzero((data[1:] == ord(":")) & _BEFORE_COLON[data[:-1]]))


def _keys(body: Any) -> int:
    """How many keys the body's objects hold: the top level's, its objects', and those of
    the objects in its lists (records). Deeper objects are not counted, which can only send
    a body to the exact check, never let a repeated key through."""
    if type(body) is list:  # a list of records (feedback)
        return sum([len(item) for item in body if type(item) is dict])
    if type(body) is not dict:
        return 0
    n = len(body)
    for value in body.values():
        if type(value) is dict:
            n += len(value)
        elif type(value) is list and value and type(value[0]) is dict:
            n += sum([len(item) for item in value if type(item) is dict])
    return n


def _all_keys(body: Any) -> int:
    """How many keys the body's objects hold at every depth (lists are followed when their
    first item is an object or a list): for a body :func:`_keys` left in doubt, before the
    far costlier parse that sees each pair. Counting too few only costs that parse."""
    n = 0
    pending = [body]
    while pending:
        value = pending.pop()
        if type(value) is dict:
            n += len(value)
            pending.extend(v for v in value.values() if type(v) is dict or type(v) is list)
        elif type(value) is list and value and type(value[0]) in (dict, list):
            pending.extend(value)
    return n


class _Pairs(dict[str, Any]):
    """A parsed JSON object that gave some key(s) more than once."""

    twice: list[str]


def _first_repeat(value: Any, where: str) -> tuple[str, list[str]] | None:
    """Where the first object that repeats a key is (``instances[3]``), and its keys."""
    if isinstance(value, _Pairs):
        return where, value.twice
    if isinstance(value, dict):
        items: Any = ((f"{where}.{k}" if where else k, v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for path, item in items:
        found = _first_repeat(item, path)
        if found is not None:
            return found
    return None


def concat_blocks(blocks: list[Block]) -> Any:
    """Join the blocks of one batch into one model input (array or DataFrame)."""
    if len(blocks) == 1:
        return blocks[0].data
    first = blocks[0].data
    if isinstance(first, np.ndarray):
        return np.concatenate([b.data for b in blocks])
    import pandas as pd

    return pd.concat([b.data for b in blocks], ignore_index=True)
