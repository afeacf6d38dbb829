"""Schemas and validation, with pandera: infer a schema from a reference, check new data.

An inferred schema checks each column's dtype and nullability, the value range of numbers,
the allowed values of low-cardinality text and categorical columns, and uniqueness where
the reference was unique; as table checks, the row count (half to twice the reference's,
unless it had no rows) and, when the reference had none, duplicate rows. Schemas round-trip
through YAML, so users can edit them, and stay plain pandera schemas, so users can add
checks in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import DataValidationError, InvalidArgumentError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

__all__ = [
    "CheckFailure",
    "ValidationReport",
    "infer_schema",
    "schema_from_yaml",
    "schema_to_yaml",
    "validate_frame",
]

MAX_CATEGORIES = 20
MIN_ROWS_FOR_UNIQUE = 10
EXAMPLES = 5
FAILING_ROWS = 5


def _pandera() -> Any:
    import pandera.extensions as extensions
    import pandera.pandas as pa

    if not hasattr(pa.Check, "row_count"):
        import pandas as pd

        @extensions.register_check_method(
            statistics=["min_rows", "max_rows"], supported_types=pd.DataFrame
        )
        def row_count(df: pd.DataFrame, *, min_rows: int, max_rows: int) -> bool:
            """The table has between ``min_rows`` and ``max_rows`` rows."""
            return bool(min_rows <= len(df) <= max_rows)

    return pa


def infer_schema(df: pd.DataFrame, *, name: str | None = None) -> pa.DataFrameSchema:
    """Return a pandera schema that ``df`` passes, with the checks this module describes.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"age": [31, 45, 27, 52], "plan": ["a", "b", "a", "a"]})
    >>> schema = infer_schema(df)
    >>> sorted(schema.columns), schema.columns["plan"].checks[0].statistics["allowed_values"]
    (['age', 'plan'], ['a', 'b'])
    """
    import pandas as pd
    from pandas.api import types as ptypes

    pa = _pandera()
    rows = len(df)
    columns = {}
    nested = False  # a column of lists or dicts: no value check, no duplicate-row check
    for col in df.columns:
        series = df[col]
        nulls = int(series.isna().sum())
        checks = []
        unique = False
        values = series.dropna()
        if series.dtype == object and not _hashable(values):
            nested = True
            columns[str(col)] = pa.Column(None, nullable=nulls > 0, name=str(col))
            continue
        if ptypes.is_bool_dtype(series.dtype):
            pass
        elif ptypes.is_numeric_dtype(series.dtype) and len(values):
            checks.append(pa.Check.in_range(_py(values.min()), _py(values.max())))
        elif isinstance(series.dtype, pd.CategoricalDtype) or ptypes.is_string_dtype(series.dtype):
            distinct = [_py(v) for v in values.unique()]
            if (
                0 < len(distinct) <= MAX_CATEGORIES
                and len(distinct) * 2 <= max(rows, 2)
                and all(_plain(v) for v in distinct)
            ):
                # The values themselves, not their text: a category 1 is not the string
                # "1", and a check on text would fail the very table it was inferred from.
                checks.append(pa.Check.isin(sorted(distinct, key=_order)))
        if (
            rows >= MIN_ROWS_FOR_UNIQUE
            and nulls == 0
            and (ptypes.is_integer_dtype(series.dtype) or ptypes.is_string_dtype(series.dtype))
            and values.is_unique
        ):
            unique = True
        columns[str(col)] = pa.Column(
            str(series.dtype), checks=checks, nullable=nulls > 0, unique=unique, name=str(col)
        )
    # An empty reference says which columns to expect, not how many rows: "at most 1"
    # would fail every real table checked with it.
    table_checks = [pa.Check.row_count(min_rows=rows // 2, max_rows=rows * 2)] if rows else []
    no_duplicates = not nested and rows > 1 and not df.duplicated().any()
    return pa.DataFrameSchema(
        columns,
        checks=table_checks,
        unique=[str(c) for c in df.columns] if no_duplicates and len(df.columns) else None,
        name=name,
    )


def _hashable(values: pd.Series) -> bool:
    """Whether every value of an object column can be hashed (lists, dicts and arrays
    cannot: such a column gets no value checks)."""
    try:
        values.unique()
    except TypeError:
        return False
    return True


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _plain(value: Any) -> bool:
    """Whether ``value`` can be an allowed value that YAML gives back as it is (dates, bytes
    and timestamps come back as other types, or not at all: such columns get no value
    check)."""
    return isinstance(value, str | int | float)


def _order(value: Any) -> tuple[str, Any]:
    """A sort key for allowed values of mixed types (numbers apart from text)."""
    return (type(value).__name__, value)


def schema_to_yaml(schema: pa.DataFrameSchema) -> str:
    """Return ``schema`` as YAML that :func:`schema_from_yaml` reads back."""
    _pandera()
    return str(schema.to_yaml())


def read_schema_file(path: Path) -> str:
    """Return the text of the schema file ``path``; raise naming it if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(
            f"The schema file {path} is not UTF-8 text (byte {e.start}).",
            hint="Save it as UTF-8 YAML (conveyor data schema REF -o FILE writes one).",
        ) from None
    except OSError as e:
        raise NotFoundError(f"Cannot read the schema file {path}: {e.strerror}.") from e


def schema_from_yaml(text: str, *, source: str = "the schema") -> pa.DataFrameSchema:
    """Parse a schema written by :func:`schema_to_yaml` (or by hand); ``source`` names it."""
    import io

    import yaml

    pa = _pandera()
    hint = "Start from `conveyor data schema NAME@V` output and edit it."
    try:
        parsed = yaml.safe_load(io.StringIO(text))
    except yaml.YAMLError as e:
        raise InvalidArgumentError(
            f"Cannot read {source} as a pandera schema: it is not valid YAML: "
            + _sentence(" ".join(str(e).split())),
            hint=hint,
        ) from e
    problem = _schema_problem(parsed, pa.Check)
    if problem is not None:
        raise InvalidArgumentError(
            f"Cannot read {source} as a pandera schema: {problem}.", hint=hint
        )
    if _drop_generated_labels(parsed):
        text = yaml.safe_dump(parsed, sort_keys=False)
    try:
        # A stream, never the text itself: pandera opens a string that names a file as that
        # file, and a schema sent to a team server must not be able to read the server's files.
        return pa.DataFrameSchema.from_yaml(io.StringIO(text))
    except Exception as e:  # pandera raises many kinds; all mean "does not parse"
        raise InvalidArgumentError(
            f"Cannot read {source} as a pandera schema: {type(e).__name__}: "
            + _sentence(" ".join(str(e).split())),
            hint=hint,
        ) from e


def _drop_generated_labels(parsed: dict[str, Any]) -> bool:
    """Drop the labels pandera wrote for checks given as a list (``error: row_count(min_rows=20,
    max_rows=80)``), so that pandera labels them again from their arguments; return whether
    any was dropped. Written once, a label would keep naming the old arguments after the
    user edits them, and so would every report. A label of the user's own stays."""
    columns = parsed.get("columns") or {}
    columns = columns.values() if isinstance(columns, dict) else columns  # or a list of them
    parts = [parsed, *(c for c in columns if isinstance(c, dict))]
    dropped = False
    for part in parts:
        checks = part.get("checks")
        for check in checks if isinstance(checks, list) else []:
            options = check.get("options") if isinstance(check, dict) else None
            if not isinstance(options, dict):
                continue
            label = str(options.get("error", ""))
            if label.startswith(f"{options.get('check_name')}(") and label.endswith(")"):
                del options["error"]
                dropped = True
    return dropped


def _sentence(text: str) -> str:
    """``text`` ending with a full stop, so that the hint after it reads as a new sentence."""
    return text if text.endswith((".", "!", "?")) else f"{text}."


#: What pandera's YAML may hold at its top, and for a column besides its checks. pandera
#: itself skips any other key, so a misspelt check would check nothing, silently.
_SCHEMA_KEYS = frozenset(
    [
        "schema_type",
        "version",
        "api",
        "dataframe_library",
        "columns",
        "checks",
        "index",
        "multiindex",
        "dtype",
        "coerce",
        "strict",
        "name",
        "ordered",
        "unique",
        "report_duplicates",
        "unique_column_names",
        "add_missing_columns",
        "title",
        "description",
        "metadata",
        "drop_invalid_rows",
    ]
)
_COLUMN_KEYS = frozenset(
    [
        "title",
        "description",
        "dtype",
        "nullable",
        "checks",
        "unique",
        "coerce",
        "required",
        "regex",
        "name",
        "default",
        "report_duplicates",
        "drop_invalid_rows",
        "metadata",
    ]
)


#: Keys whose value is true or false: pandera takes any other value (a misspelt ``flase``,
#: a string) for true, which would silently turn a check off.
_SWITCHES = frozenset(
    [
        "nullable",
        "unique_column_names",
        "coerce",
        "required",
        "regex",
        "ordered",
        "add_missing_columns",
        "drop_invalid_rows",
    ]
)

#: Keys that describe a schema without checking anything.
_DESCRIPTIVE_KEYS = frozenset(
    {"schema_type", "version", "api", "dataframe_library", "name", "title", "description"}
    | {"metadata"}
)


def _schema_problem(parsed: Any, checks: Any) -> str | None:
    """What makes ``parsed`` (a YAML document) no schema, or one with keys pandera would
    skip (a misspelt key or check); None when it is fine. ``checks``: pandera's Check."""
    if parsed is None:
        return "it is empty"
    if not isinstance(parsed, dict):
        return f"it is a {type(parsed).__name__}, not a mapping of schema keys"
    unknown = sorted(str(k) for k in parsed if k not in _SCHEMA_KEYS)
    if unknown:
        return _unknown("the schema has", "key", unknown[0], _SCHEMA_KEYS)
    if not set(parsed) - _DESCRIPTIVE_KEYS:
        return "it has no columns, checks or other rules, so it would check nothing"
    problem = _switch_problem("the schema", parsed)
    if problem is not None:
        return problem
    if not (_is_switch(parsed.get("strict")) or parsed["strict"] == "filter"):
        return f"the schema has strict: {parsed['strict']!r}; expected true, false or filter"
    columns = parsed.get("columns") or {}
    if isinstance(columns, list):
        columns = {c.get("name") if isinstance(c, dict) else c: c for c in columns}
    if not isinstance(columns, dict):
        return "its columns are not a mapping of column names to their checks"
    index = parsed.get("index") or []
    if not isinstance(index, list):
        return "its index is not a list of index levels"
    parts = [(f"column {name!r}", column) for name, column in columns.items()]
    parts += [(f"index level {i}", level) for i, level in enumerate(index)]
    for where, part in parts:
        problem = _component_problem(where, part, checks)
        if problem is not None:
            return problem
    for check in _named_checks(parsed.get("checks")):
        if not callable(getattr(checks, check, None)):
            return _unknown("the schema has", "check", check, dir(checks))
    return None


def _component_problem(where: str, part: Any, checks: Any) -> str | None:
    """The first key of a column or index level (``part``) that pandera would skip."""
    if part is None:
        return None
    if not isinstance(part, dict):
        return f"{where} is not a mapping of its dtype and checks"
    problem = _switch_problem(where, part)
    if problem is not None:
        return problem
    if not _is_switch(part.get("unique")):
        return f"{where} has unique: {part['unique']!r}; expected true or false"
    flat = []
    for key in part:
        if key in _COLUMN_KEYS:
            continue
        if not callable(getattr(checks, str(key), None)):
            known = _COLUMN_KEYS | {k for k in dir(checks) if not k.startswith("_")}
            return _unknown(f"{where} has", "key", str(key), known)
        flat.append(str(key))
    if flat and part.get("checks") is not None:
        # pandera reads checks written beside `checks:` only when there is no `checks:`.
        return (
            f"{where} has the check {flat[0]!r} beside `checks:`, which pandera would skip; "
            "put it under `checks:`, or write every check beside the dtype"
        )
    for check in _named_checks(part.get("checks")):
        if not callable(getattr(checks, check, None)):
            return _unknown(f"{where} has", "check", check, dir(checks))
    return None


def _switch_problem(where: str, part: dict[Any, Any]) -> str | None:
    """The first key of ``part`` that must be true or false and is something else."""
    for key in sorted(_SWITCHES & {str(k) for k in part}):
        if not _is_switch(part[key]):
            return f"{where} has {key}: {part[key]!r}; expected true or false"
    return None


def _is_switch(value: Any) -> bool:
    """Whether ``value`` is true, false or left out (0 and 1 are not: YAML's are numbers)."""
    return value is None or isinstance(value, bool)


def _named_checks(checks: Any) -> list[str]:
    """The check names of a ``checks`` entry (a mapping by name, or a list of checks)."""
    if isinstance(checks, dict):
        return [str(k) for k in checks]
    if isinstance(checks, list):
        return [
            str(c.get("options", {}).get("check_name"))
            for c in checks
            if isinstance(c, dict) and isinstance(c.get("options"), dict)
        ]
    return []


def _unknown(where: str, what: str, key: str, known: Any) -> str:
    import difflib

    close = difflib.get_close_matches(key, sorted(str(k) for k in known), n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where} an unknown {what} {key!r}{guess}, which pandera would skip"


@dataclass(frozen=True, slots=True)
class CheckFailure:
    """One check that failed: on which column (None for table checks), how often, examples."""

    column: str | None
    check: str
    failures: int
    examples: list[Any] = field(default_factory=list)


@dataclass(slots=True)
class ValidationReport:
    """The outcome of checking a table against a schema; JSON-serializable by ``to_dict``.

    ``schema`` is the schema's own name (its YAML ``name``); ``schema_source`` is where it
    came from: the version it was saved with (``customers@3``) or the file it was read from,
    None for a schema object given from Python.
    """

    passed: bool
    rows: int
    columns: int
    failures: list[CheckFailure] = field(default_factory=list)
    failing_rows: list[dict[str, Any]] = field(default_factory=list)
    schema: str | None = None
    data: str | None = None
    schema_source: str | None = None

    @property
    def failed_checks(self) -> int:
        """How many distinct checks failed."""
        return len(self.failures)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-compatible values."""
        return {
            "passed": self.passed,
            "rows": self.rows,
            "columns": self.columns,
            "schema": self.schema,
            "schema_source": self.schema_source,
            "data": self.data,
            "failures": [
                {
                    "column": f.column,
                    "check": f.check,
                    "failures": f.failures,
                    "examples": [_jsonable(x) for x in f.examples],
                }
                for f in self.failures
            ],
            "failing_rows": [{k: _jsonable(v) for k, v in r.items()} for r in self.failing_rows],
        }

    def summary(self) -> str:
        """One line: passed, or how many checks failed on which columns."""
        what = self.data or "the data"
        if self.passed:
            rows, columns = (
                _plural(n, word) for n, word in ((self.rows, "row"), (self.columns, "column"))
            )
            return f"{what} passed every check ({rows}, {columns})."
        where = ", ".join(
            f"{f.column or '<table>'}: {f.check} ({f.failures})" for f in self.failures[:5]
        )
        more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
        return f"{what} failed {len(self.failures)} check(s): {where}{more}."

    def raise_for_failures(self) -> None:
        """Raise :class:`DataValidationError` (carrying this report) if any check failed."""
        if not self.passed:
            raise DataValidationError(
                self.summary(),
                hint="See report.failures for the failing checks and examples.",
                report=self,
            )


def _jsonable(value: Any) -> Any:
    """``value`` (a cell or a failure case) as a JSON value: missing values as null,
    infinities as text (JSON has no number for them), lists and arrays element-wise."""
    import math

    import pandas as pd

    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or getattr(value, "ndim", 0) > 0:
        return [_jsonable(v) for v in value]  # a list column's cell: a NumPy array
    if pd.api.types.is_scalar(value) and pd.isna(value):  # pd.NA, NaT
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


def validate_frame(
    df: pd.DataFrame,
    schema: pa.DataFrameSchema,
    *,
    data: str | None = None,
    schema_source: str | None = None,
) -> ValidationReport:
    """Check ``df`` against ``schema``, collecting every failure (never raising for them).

    ``data`` and ``schema_source`` name what was checked and where the schema came from,
    for the report. A failing row is named by its index label, or by its position when
    labels repeat (as after ``pd.concat`` without ``ignore_index``) and the schema does
    not check the index.
    """
    pa = _pandera()
    if schema.index is None and df.index.has_duplicates:
        # pandera cannot report the duplicate rows of such a frame (it raises ValueError),
        # and a repeated label would not say which row failed anyway. A schema that checks
        # the index must see its labels: positions would fail its dtype, pass its unique.
        df = df.reset_index(drop=True)
    df, schema = _same_representation(df, schema)
    report = ValidationReport(
        passed=True,
        rows=len(df),
        columns=len(df.columns),
        schema=schema.name,
        data=data,
        schema_source=schema_source,
    )
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as e:
        _raise_for_broken_checks(e.schema_errors, schema_source)
        report.passed = False
        _fill(report, df, e.failure_cases, _unrun(e.schema_errors))
    except pa.errors.SchemaError as e:  # raised instead of SchemaErrors in a few cases
        report.passed = False
        report.failures.append(CheckFailure(None, str(e.check or "schema"), 1, [str(e)][:1]))
    return report


def _same_representation(
    df: pd.DataFrame, schema: pa.DataFrameSchema
) -> tuple[pd.DataFrame, pa.DataFrameSchema]:
    """``df`` and ``schema``, with the columns that hold the schema's values in another
    pandas representation converted to the schema's.

    The same Arrow column reads into pandas in more than one way: integers with nulls as
    ``Int64`` where the table carries pandas metadata (a version added from a DataFrame) and
    as ``float64`` elsewhere (a CSV file), booleans with nulls as ``boolean`` or ``object``,
    the same instants as ``datetime64[s, UTC]`` from a CSV file and ``[us, UTC]`` from
    Parquet, and whole numbers as ``float64`` from a CSV file where the column has gaps
    and as ``int64`` where it has none. Such differences are in how the data was
    stored, not in the data, and must not fail a dtype check. (pandera already ignores the
    unit of datetimes without a time zone, and takes ``Int64`` for ``int64`` and back. An
    integer of another width is no such case: NumPy would wrap ``300`` into an ``int8``.)
    """
    import numpy as np
    import pandas as pd
    from pandas.api import types as ptypes

    converted: dict[str, Any] = {}
    for name, column in schema.columns.items():
        if column.regex or name not in df.columns or column.dtype is None:
            continue
        want, series = column.dtype.type, df[name]
        have = series.dtype
        if want == have:
            continue
        nullable_int = _nullable_integer(want)
        if isinstance(want, pd.DatetimeTZDtype) and isinstance(have, pd.DatetimeTZDtype):
            if str(want.tz) == str(have.tz):  # another time zone stays a failure
                schema = schema.update_column(name, dtype=have)
        elif nullable_int and ptypes.is_float_dtype(have):
            values = series.dropna().to_numpy()
            if np.isfinite(values).all() and (values == np.round(values)).all():
                converted[name] = series  # integers with nulls, read as floats
        elif ptypes.is_float_dtype(want) and ptypes.is_integer_dtype(have):
            # Integers where the reference's read as floats (its nulls made them so: a CSV
            # file's column of whole numbers with gaps, and one without), when exact there.
            if (series.dropna().abs() <= _EXACT_IN_FLOAT).all():
                converted[name] = series
        elif isinstance(want, pd.BooleanDtype) and ptypes.is_object_dtype(have):
            if series.dropna().map(type).isin([bool, np.bool_]).all():
                converted[name] = series  # booleans with nulls, read as objects
        elif (
            ptypes.is_object_dtype(want)
            and ptypes.is_bool_dtype(have)
            and _allows_only_booleans(column)
        ):
            # Booleans (with nulls or not) where the reference's read as objects (it had
            # nulls); dates, bytes and decimals read as objects too, so only where the
            # schema's allowed values say the column holds booleans.
            converted[name] = series
    for name, series in converted.items():
        try:
            converted[name] = series.astype(schema.columns[name].dtype.type)
        except (TypeError, ValueError, OverflowError):  # out of range: leave it to fail
            converted[name] = series
    if converted:
        df = df.assign(**converted)
    return df, schema


def _allows_only_booleans(column: Any) -> bool:
    """Whether ``column`` (a pandera column) has a check of allowed values, all booleans."""
    for check in column.checks:
        allowed = (check.statistics or {}).get("allowed_values")
        if check.name == "isin" and allowed and all(isinstance(v, bool) for v in allowed):
            return True
    return False


def _raise_for_broken_checks(errors: list[Any], schema_source: str | None) -> None:
    """Raise when a check raised on data of the dtype it expects: the check cannot run
    (``min_rows: twenty``, ``ge: zero``), so the data has not been checked, which is no
    failure of the data. A check that raised on a column (or index) of the wrong dtype is
    no such case, nor is a table check when any column has the wrong dtype (it may read that
    column): the data fails anyway, and :func:`_unrun` says how the report shows them."""
    from pandera.errors import SchemaErrorReason

    wrong_dtype = [e.schema for e in errors if e.reason_code == SchemaErrorReason.WRONG_DATATYPE]
    for e in errors:
        if e.reason_code != SchemaErrorReason.CHECK_ERROR:
            continue
        kind = type(e.schema).__name__
        if any(w is e.schema for w in wrong_dtype) or (kind == "DataFrameSchema" and wrong_dtype):
            continue
        if kind == "Column":
            where = f"column {e.schema.name!r}"
        else:
            where = "the index" if "Index" in kind else "the table"
        source = f" of {schema_source}" if schema_source else ""
        raise InvalidArgumentError(  # failure_cases holds the repr of the check's exception
            f"The check {e.check.error or e.check.name} on {where} could not run: "
            f"{e.failure_cases}; "
            "the data was not checked.",
            hint=f"Correct the check's arguments in the schema{source} (numbers where it "
            "compares numbers, say), or remove the check.",
        )


def _unrun(errors: list[Any]) -> dict[tuple[str | None, int], str]:
    """The checks that raised on columns of the wrong dtype, by column (None for a table
    check) and number, with what to say of a table check instead of its exception.

    A check of a column's values means nothing once the values are of another type (a
    range of numbers, for text): the column's dtype failure says what is wrong, and the
    check is left out of the report. A table check may read any column; it stays, saying
    which columns it could not read instead of a ``TypeError`` it raised on them."""
    from pandera.errors import SchemaErrorReason

    wrong = [
        str(e.schema.name)
        for e in errors
        if e.reason_code == SchemaErrorReason.WRONG_DATATYPE and type(e.schema).__name__ == "Column"
    ]
    if not wrong:
        return {}
    wrong = list(dict.fromkeys(wrong))
    names = ", ".join(repr(n) for n in wrong)
    table_note = f"not run: {names} {'is' if len(wrong) == 1 else 'are'} of the wrong dtype"
    unrun: dict[tuple[str | None, int], str] = {}
    for e in errors:
        kind = type(e.schema).__name__
        if e.reason_code != SchemaErrorReason.CHECK_ERROR or e.check_index is None:
            continue
        if kind == "Column" and str(e.schema.name) in wrong:
            unrun[(str(e.schema.name), int(e.check_index))] = ""
        elif kind == "DataFrameSchema":
            unrun[(None, int(e.check_index))] = table_note
    return unrun


#: The largest integer every one up to which a float64 holds exactly.
_EXACT_IN_FLOAT = 2**53


def _nullable_integer(dtype: Any) -> bool:
    """Whether ``dtype`` is one of pandas' integer types that hold nulls (``Int64``...)."""
    from pandas.api import types as ptypes

    return ptypes.is_extension_array_dtype(dtype) and ptypes.is_integer_dtype(dtype)


def _distinct(values: pd.Series) -> pd.Series:
    """``values`` without repeats, in order: 20 rows failing with one value show it once."""
    try:
        return values.drop_duplicates()
    except TypeError:  # values that cannot be hashed (lists): as they are
        return values


def _fill(
    report: ValidationReport,
    df: pd.DataFrame,
    cases: pd.DataFrame,
    unrun: dict[tuple[str | None, int], str],
) -> None:
    """Fill ``report`` from pandera's failure cases; ``unrun``: see :func:`_unrun`."""
    import pandas as pd

    bad_index: list[Any] = []
    for (context, column, check), group in cases.groupby(
        ["schema_context", "column", "check"], dropna=False, sort=False
    ):
        # A table check names the schema in ``column``: tell it by its context, not by that
        # name, which may be a column's too.
        table = context == "DataFrameSchema" or pd.isna(column)
        col = None if table else str(column)
        name = str(check)
        if name in ("column_in_dataframe", "column_in_schema"):
            # A column missing, or (strict) one the schema lacks: pandera files it under
            # the table with the column as the failure case; the user looks for the column.
            for missing in dict.fromkeys(str(c) for c in group["failure_case"]):
                report.failures.append(CheckFailure(missing, name, 1))
            continue
        if name == "multiple_fields_uniqueness":
            col, name = None, "no duplicate rows"
        number = group["check_number"].iloc[0]
        note = None if pd.isna(number) else unrun.get((col, int(number)))
        if note == "":  # a check of values of the wrong type: the dtype failure says it
            continue
        examples = _distinct(group["failure_case"]).head(EXAMPLES).tolist()
        if note is not None:
            examples = [note]
        if name.startswith("row_count("):  # its failure case is just False
            examples = [f"{len(df)} rows"]
        count = len(group) if name != "no duplicate rows" else int(group["index"].nunique())
        existing = next((f for f in report.failures if (f.column, f.check) == (col, name)), None)
        if existing is None:
            report.failures.append(CheckFailure(col, name, count, examples))
        bad_index.extend(i for i in group["index"].dropna().tolist())
    seen: list[Any] = []
    for i in bad_index:
        if i not in seen and i in df.index:
            seen.append(i)
        if len(seen) >= FAILING_ROWS:
            break
    report.failing_rows = [
        {"_row": _jsonable(i), **{str(k): v for k, v in df.loc[i].to_dict().items()}} for i in seen
    ]


def _plural(n: int, word: str) -> str:
    """``'1 row'``, ``'1,200 rows'``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")
