"""Reading a Parquet file from Python-owned bytes or a Python file object, safely.

``pyarrow.parquet.read_table`` goes through Arrow's dataset scanner, which reads ahead on
Arrow's own I/O threads and may drop its last reference to what it read there, after the
call has returned. When the source is a Python file object or Python bytes, those buffers
hold Python objects, and releasing one takes the GIL: if the interpreter is shutting down
by then (a script that reads a log and ends), the thread cannot get it and the process dies
with "terminate called without an active exception" (apache/arrow#49942, fixed after
pyarrow 26). :func:`read_parquet` reads through ``ParquetFile.read`` without pre-buffering:
each column chunk is read when it is decoded, and the call returns only when all of them
are, so nothing of the read outlives it. A path read by pyarrow itself needs none of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["read_parquet"]


def read_parquet(source: Any, columns: list[str] | None = None) -> pa.Table:
    """Read ``source`` (a file object, bytes, an Arrow buffer or a path) as one table.

    ``columns`` are top-level names or nested paths (``inputs.age``); a nested path keeps
    its struct, narrowed to the fields asked for (``inputs: struct<age>``), and the columns
    come in the order they are first named.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(source, bytes | bytearray | memoryview):
        source = pa.py_buffer(source)
    table = pq.ParquetFile(source, pre_buffer=False).read(columns=columns)
    if columns:
        order = list(dict.fromkeys(c.split(".", 1)[0] for c in columns))
        table = table.select([c for c in order if c in table.column_names])
    return table
