"""Parquet read from Python objects: nothing of the read outlives it, and the columns asked for
come back as asked."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.core.parquet import read_parquet

# Hundreds of columns: pyarrow decodes them on its CPU threads, and a thread that releases
# a Python-owned buffer after the read returned aborts a process that is ending. Read as
# pyarrow would by default, this script aborts in about half of its runs (pyarrow 26).
_SCRIPT = textwrap.dedent(
    """
    import io, sys
    import pyarrow as pa, pyarrow.parquet as pq
    from conveyor.core.parquet import read_parquet

    table = pa.table({f"c{i}": pa.array(range(500)) for i in range(800)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    data = sink.getvalue()
    source = {"file": io.BytesIO(data), "bytes": data, "reader": pa.BufferReader(data)}
    print(read_parquet(source[sys.argv[1]]).num_rows)
    """
)


@pytest.mark.parametrize("source", ["file", "bytes", "reader"])
def test_a_script_that_ends_right_after_a_read_exits_cleanly(source: str) -> None:
    for _ in range(6):  # the failure was a race at exit: each run is a fresh chance of it
        result = subprocess.run(
            [sys.executable, "-c", _SCRIPT, source], capture_output=True, text=True, timeout=60
        )
        assert (result.returncode, result.stdout.strip()) == (0, "500"), result.stderr


def _file() -> bytes:
    inputs = pa.StructArray.from_arrays(
        [pa.array([31, 45]), pa.array(["basic", "pro"])], names=["age", "plan"]
    )
    sink = io.BytesIO()
    pq.write_table(pa.table({"ts": [1, 2], "inputs": inputs, "role": ["a", "b"]}), sink)
    return sink.getvalue()


def test_nested_columns_keep_their_struct_narrowed_in_the_order_named() -> None:
    table = read_parquet(io.BytesIO(_file()), columns=["role", "inputs.plan", "ts"])
    assert table.column_names == ["role", "inputs", "ts"]
    assert table.schema.field("inputs").type == pa.struct([("plan", pa.string())])
    assert table.flatten().column("inputs.plan").to_pylist() == ["basic", "pro"]


def test_bytes_and_file_objects_read_alike() -> None:
    data = _file()
    assert read_parquet(data).equals(read_parquet(io.BytesIO(data)))
    assert read_parquet(data).equals(pq.read_table(io.BytesIO(data)))


def test_arrow_threads_never_read_the_callers_python_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deterministic where the exit race above is not: every read on Arrow's threads is of
    a path, a file Arrow opened, or a copy in Arrow's memory, never of the bytes passed."""
    data = _file()
    seen: list[tuple[object, bool]] = []

    class Spy(pq.ParquetFile):
        def __init__(self, source: object, **kwargs: object) -> None:
            self.spied = source
            super().__init__(source, **kwargs)  # type: ignore[arg-type]

        def read(self, *args: object, use_threads: bool = True, **kwargs: object) -> pa.Table:
            seen.append((self.spied, use_threads))
            return super().read(*args, use_threads=use_threads, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pq, "ParquetFile", Spy)
    callers = pa.py_buffer(data).address
    sources = {
        "bytes": data,
        "memoryview": memoryview(data),
        "buffer": pa.py_buffer(data),
        "reader": pa.BufferReader(data),
        "file object": io.BytesIO(data),
    }
    for kind, source in sources.items():
        seen.clear()
        assert read_parquet(source).num_rows == 2
        ((read_from, threads),) = seen
        if threads:
            assert isinstance(read_from, pa.BufferReader), kind
            read_from.seek(0)
            assert read_from.read_buffer().address != callers, kind
