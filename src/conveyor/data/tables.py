"""Tables: the file formats a version can be loaded from, and the profile computed at add time.

The profile (per column: type, null rate, min/max/mean/quantiles and a histogram for numbers,
min/max/median for times, dates and durations, top category frequencies for the rest) is
computed once, when a table version is added, and stored with it; monitoring uses it as its
reference instead of re-reading the data.

The statistics of a float column are of its finite values: its infinities and NaNs are
counted apart (``infinite`` and ``nan``), as its nulls are, and ``count`` (the values that
are not null) includes them. A column of nothing but infinities has counts and no range.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections import Counter
from typing import TYPE_CHECKING, Any

from conveyor.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

__all__ = [
    "TABLE_FORMATS",
    "format_of",
    "profile_table",
    "read_table",
    "restore_categories",
    "table_format_of",
    "table_to_add",
    "to_arrow",
    "write_parquet",
]

#: Extension -> format name, for files ``load`` can read as a table.
TABLE_FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".feather": "feather",
    ".arrow": "feather",
}
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
#: The profile's sketch of a numeric column's distribution: its values at these shares of
#: its rows (every percentile, and every tenth of one in each tail, where a long tail's few
#: rows are far apart), so that each stretch between neighbours holds a known share however
#: skewed the column is. Monitoring compares a window's values with it (a histogram of
#: equal-width bins puts nearly all of a skewed column in one bin).
SKETCH_SHARES = tuple(
    round(float(x), 6)
    for x in sorted(
        {i / 1000 for i in range(0, 11)}
        | {i / 100 for i in range(1, 100)}
        | {i / 1000 for i in range(990, 1001)}
    )
)
TOP_CATEGORIES = 20


def format_of(name: str) -> str | None:
    """Return the table format of a file name, or None if it is not a table file."""
    return TABLE_FORMATS.get(os.path.splitext(name)[1].lower())


def table_format_of(names: list[str]) -> str | None:
    """Return the format shared by every file in ``names``, or None if they are not one table."""
    if not names:
        return None
    first = format_of(names[0])
    if first is None:  # folders of other files are common: no need to look at the rest
        return None
    return first if all(format_of(n) == first for n in names) else None


def supported_formats() -> str:
    """The supported table file types, for error messages."""
    return ", ".join(sorted(TABLE_FORMATS))


def to_arrow(data: Any) -> pa.Table:
    """Return ``data`` (a pandas DataFrame or an Arrow table) as an Arrow table."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        names = data.columns.astype(str)
        if names.has_duplicates:
            repeated = sorted(set(names[names.duplicated()]))
            raise InvalidArgumentError(
                f"The DataFrame has more than one column named {', '.join(map(repr, repeated))}; "
                "a table needs distinct column names.",
                hint="Rename or drop the repeated columns first.",
            )
        index_is_default = isinstance(data.index, pd.RangeIndex) and data.index.name is None
        try:
            return pa.Table.from_pandas(data, preserve_index=not index_is_default)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise InvalidArgumentError(
                f"The DataFrame cannot be stored as a table: {e}.",
                hint="Give each column one type (e.g. df[col] = df[col].astype(str) for a "
                "column of mixed values).",
            ) from None
    raise InvalidArgumentError(
        f"Expected a path (a file or a folder), a pandas DataFrame or a pyarrow Table; got "
        f"{type(data).__name__}."
    )


def table_to_add(data: Any, dataset: str) -> pa.Table:
    """Return ``data`` as the Arrow table a version of ``dataset`` stores (see :func:`to_arrow`).

    Parquet names columns with strings, and the profile and the schema name them so too: a
    DataFrame's column labels that are not strings (``0``, a tuple) are stored as their
    ``str()`` and load back so, which this warns about. (pyarrow could restore them on load
    from its pandas metadata, but then a version would no longer match its own profile and
    schema, nor the column names given on the command line.)
    """
    import pyarrow as pa

    if not isinstance(data, pa.Table | pa.RecordBatch):
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            renamed = [c for c in data.columns if not isinstance(c, str)]
            if renamed:
                import warnings

                shown = ", ".join(repr(c) for c in renamed[:5]) + (
                    f" and {len(renamed) - 5} more" if len(renamed) > 5 else ""
                )
                warnings.warn(
                    f"Dataset {dataset!r}: the DataFrame's column names {shown} are not "
                    "strings; they are stored, and load back, as strings (a Parquet table "
                    "names its columns with strings). Name the columns with strings before adding "
                    "(df.columns = df.columns.astype(str)) to load back the names you add.",
                    UserWarning,
                    stacklevel=4,  # the caller of cv.data.add
                )
    return to_arrow(data)


def write_parquet(table: pa.Table) -> bytes:
    """Serialize ``table`` as Parquet (zstd), the storage format of table versions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    try:
        pq.write_table(table, sink, compression="zstd")
    except pa.ArrowNotImplementedError as e:  # a type Parquet cannot hold (an interval)
        kinds = [f"{f.name!r} ({f.type})" for f in table.schema if _not_parquet(f.type)]
        what = f"its column {', '.join(kinds)} is of a type Parquet" if kinds else "Parquet"
        raise InvalidArgumentError(
            f"The table cannot be stored: {what} cannot hold ({e}).",
            hint="Convert such columns first, e.g. df[col] = df[col].astype(str).",
        ) from None
    return sink.getvalue()


def _not_parquet(kind: pa.DataType) -> bool:
    """Whether Parquet cannot store ``kind`` (date offsets: Arrow intervals)."""
    import pyarrow as pa

    return bool(pa.types.is_interval(kind))


def read_table(fmt: str, sources: list[Any], names: list[str] | None = None) -> pa.Table:
    """Read and concatenate files of format ``fmt`` (paths or binary file objects; ``names``
    are what errors call them).

    Files may differ in columns (one missing in some files is null there) and in number
    types (integers and floats make floats), but files with no column in common are not
    one table.
    """
    import pyarrow as pa

    names = names or [_name(src) for src in sources]
    tables = [_read_one(fmt, src, name) for src, name in zip(sources, names, strict=True)]
    for table, name in zip(tables, names, strict=True):
        repeated = sorted(c for c, n in Counter(table.column_names).items() if n > 1)
        if repeated:  # (a header exported with blank names: ",,")
            raise InvalidArgumentError(
                f"{name} has more than one column named "
                f"{', '.join(map(repr, repeated[:5]))}; a table needs distinct column names.",
                hint="Rename the repeated columns in its header.",
            )
    if not tables:
        raise InvalidArgumentError("There are no files to read as a table.")
    if len(tables) == 1:
        return tables[0]
    hint = (
        "Read the files one by one: cv.data.path() of the version from Python, or "
        "`conveyor data checkout`."
    )
    first = set(tables[0].column_names)
    for table, name in zip(tables[1:], names[1:], strict=True):
        if not first & set(table.column_names):
            raise InvalidArgumentError(
                f"The {fmt} files are not one table: {name} has no column in common with "
                f"{names[0]} ({', '.join(table.column_names[:5])} vs "
                f"{', '.join(tables[0].column_names[:5])}).",
                hint=hint,
            )
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as e:  # ArrowInvalid, or ArrowTypeError (incompatible types)
        raise InvalidArgumentError(
            f"The {fmt} files do not share one schema, so they are not one table: {e}",
            hint=hint,
        ) from e


def restore_categories(table: pa.Table) -> pa.Table:
    """Return ``table`` with the pandas categoricals that Parquet read back as their values
    made categoricals again.

    Parquet keeps a dictionary (a pandas ``category``) only of text or bytes: a categorical
    of numbers or times reads back as a plain column, so a DataFrame added with one would
    load with another dtype, and fail the schema inferred from its own version. pandas'
    metadata in the file says which columns were categoricals and whether ordered; their
    categories are then the column's distinct values in sorted order, as pandas makes them
    by default. (Categories no row uses, and an order other than the sorted one, are not
    in the file: they cannot come back. Times in a time zone stay a plain column: pandas
    makes a categorical of such times without their zone.)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    meta = table.schema.pandas_metadata or {}
    for described in meta.get("columns", []):
        name = described.get("field_name")
        if described.get("pandas_type") != "categorical" or name not in table.column_names:
            continue
        at = table.column_names.index(name)
        column = table.column(at)
        if pa.types.is_dictionary(column.type):
            continue
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            continue  # pandas would make a categorical of its times without their zone
        ordered = bool((described.get("metadata") or {}).get("ordered"))
        categories = pc.unique(column).drop_null()
        categories = categories.take(pc.sort_indices(categories))
        codes = _codes_type(described.get("numpy_type"), len(categories))
        positions = pc.index_in(column, value_set=categories)
        restored = pa.chunked_array(
            [
                pa.DictionaryArray.from_arrays(chunk.cast(codes), categories, ordered=ordered)
                for chunk in positions.chunks
            ],
            type=pa.dictionary(codes, column.type, ordered),
        )
        field = table.schema.field(at).with_type(restored.type)
        table = table.set_column(at, field, restored)
    return table


def _codes_type(numpy_type: Any, categories: int) -> pa.DataType:
    """The type of a restored categorical's codes: the one pandas' metadata names, or a
    wider one where the categories outnumber it (a version of several files, each with
    codes as narrow as its own categories allow, has the categories of all of them)."""
    import pyarrow as pa

    try:
        named = pa.from_numpy_dtype(numpy_type)
    except (TypeError, ValueError, pa.ArrowException):
        named = pa.int32()
    widths = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
    least = named.bit_width if pa.types.is_signed_integer(named) else 32
    return next(w for w in widths if w.bit_width >= least and categories <= 2 ** (w.bit_width - 1))


def _read_one(fmt: str, src: Any, name: str) -> pa.Table:
    import pyarrow as pa

    try:
        if fmt == "parquet":
            from conveyor.core.parquet import read_parquet

            return read_parquet(src)
        if fmt in ("csv", "tsv"):
            import pyarrow.csv as pacsv

            parse = pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
            return pacsv.read_csv(src, parse_options=parse)
        if fmt == "jsonl":
            import pyarrow.json as pajson

            return pajson.read_json(src)
        if fmt == "feather":
            import pyarrow.feather as feather

            return feather.read_table(src)
    except (pa.ArrowException, OSError) as e:
        raise InvalidArgumentError(f"Cannot read {name} as {fmt}: {e}") from e
    raise InvalidArgumentError(
        f"{fmt!r} is not a supported table format; supported file types: {supported_formats()}."
    )


def _name(src: Any) -> str:
    return str(getattr(src, "name", src))


# -- profile -----------------------------------------------------------------------------


def profile_table(table: pa.Table) -> dict[str, Any]:
    """Return the profile of ``table``: row count and statistics for each column.

    >>> import pyarrow as pa
    >>> p = profile_table(pa.table({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", "a"]}))
    >>> p["rows"], p["columns"]["x"]["null_rate"], p["columns"]["c"]["top"][0]
    (4, 0.25, ['a', 3])
    """
    return {
        "rows": table.num_rows,
        "columns": {name: _profile_column(table.column(name)) for name in table.column_names},
        # The table's order, kept apart: PostgreSQL's JSONB keeps an object's keys in an
        # order of its own, and shows, cards and monitors list columns as the table does.
        "order": list(table.column_names),
    }


def _profile_column(col: pa.ChunkedArray) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = len(col)
    nulls = col.null_count
    out: dict[str, Any] = {
        "type": str(col.type),
        "count": rows - nulls,
        "null_rate": (nulls / rows) if rows else 0.0,
    }
    if rows == nulls:
        return out
    if pa.types.is_dictionary(col.type):  # pandas categoricals: profiled as their values
        col = col.cast(col.type.value_type)
    kind = col.type
    if pa.types.is_floating(kind):  # counted apart, as nulls are: no statistic reads them
        out["infinite"] = _true_count(pc.is_inf(col))
        out["nan"] = _true_count(pc.is_nan(col))
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # The statistics are of floats; an integer above 2**53 (an id) only rounds there.
        values = pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        out.update(_numeric_stats(values))
        if pa.types.is_integer(kind):  # exact, where rounding could merge or shift values
            bounds = pc.min_max(col).as_py()
            out.update(min=bounds["min"], max=bounds["max"])
            out["distinct"] = pc.count_distinct(col).as_py()
    elif pa.types.is_boolean(kind):
        out["mean"] = _num(pc.mean(col).as_py())
        out["top"] = _top(col)
    elif pa.types.is_duration(kind):  # min_max has no kernel for durations: use their counts
        bounds = pc.min_max(col.cast(pa.int64())).as_py()
        out["min"] = str(pa.scalar(bounds["min"], kind).as_py())
        out["max"] = str(pa.scalar(bounds["max"], kind).as_py())
        out["median"] = _median_time(col)
    elif pa.types.is_temporal(kind) and not pa.types.is_interval(kind):
        bounds = pc.min_max(col).as_py()
        out["min"] = str(bounds["min"])
        out["max"] = str(bounds["max"])
        out["median"] = _median_time(col)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        out["distinct"] = pc.count_distinct(col).as_py()
        out["top"] = _top(col)
    return out


def _median_time(col: pa.ChunkedArray) -> str:
    """The middle one of a column of times, dates or durations (the lower of the two middle
    ones for an even count: a value the column holds), as text like its min and max."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = col.type
    counts = pa.int64() if kind.bit_width == 64 else pa.int32()
    middle = pc.quantile(col.cast(counts), q=0.5, interpolation="lower")[0].as_py()
    return str(pa.scalar(middle, counts).cast(kind).as_py())


def _true_count(flags: pa.ChunkedArray) -> int:
    """How many of ``flags`` are true (nulls are not)."""
    import pyarrow.compute as pc

    return int(pc.sum(flags).as_py() or 0)


def _numeric_stats(values: Any) -> dict[str, Any]:
    import numpy as np

    finite = np.sort(values[np.isfinite(values)])  # once: every statistic below reads it
    if finite.size == 0:
        return {}
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    return {
        "min": _num(finite[0]),
        "max": _num(finite[-1]),
        "mean": _num(finite.mean()),
        "std": _num(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "distinct": int(1 + np.count_nonzero(finite[1:] != finite[:-1])),
        "quantiles": {
            str(q): _num(v) for q, v in zip(QUANTILES, _quantiles(finite, QUANTILES), strict=True)
        },
        "histogram": {"edges": [_num(e) for e in edges], "counts": [int(c) for c in counts]},
        # At SKETCH_SHARES (the same for every column, so not stored), as little-endian
        # float32s in base64: ample for judging drift, a fifth of the text of JSON numbers.
        "sketch": base64.b64encode(
            _quantiles(finite, SKETCH_SHARES).astype("<f4").tobytes()
        ).decode("ascii"),
    }


def _quantiles(ordered: Any, shares: Sequence[float]) -> Any:
    """The values at ``shares`` of sorted ``ordered``, interpolated linearly between ranks
    (NumPy's default method), without sorting again."""
    import numpy as np

    at = np.asarray(shares) * (len(ordered) - 1)
    low = np.floor(at).astype(np.int64)
    high = np.minimum(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _top(col: pa.ChunkedArray) -> list[list[Any]]:
    import pyarrow.compute as pc

    counts = pc.value_counts(col.drop_null() if hasattr(col, "drop_null") else col)
    pairs = [(v["values"], v["counts"]) for v in counts.to_pylist()]
    pairs.sort(key=lambda p: (-p[1], str(p[0])))
    return [[_jsonable(v), int(c)] for v, c in pairs[:TOP_CATEGORIES]]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _num(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None
