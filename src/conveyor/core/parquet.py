"""Reading a Parquet file from Python-owned bytes or a Python file object, safely.

``pyarrow.parquet.read_table`` reads ahead and decodes on Arrow's own thread pools, and a
pool thread may drop its last reference to what it read after the call has returned. When
the source is a Python file object or Python bytes, those buffers hold Python objects, and
releasing one takes the GIL: if the interpreter is shutting down by then (a script that
reads a log and ends), the thread cannot get it and the process dies with "terminate called
without an active exception" (apache/arrow#49942, #50482). :func:`read_parquet` keeps every
Python-owned buffer on the calling thread:

- bytes (and a ``pa.BufferReader``, which may be over bytes) are copied once into Arrow's
  own memory, which any thread may release, so the read still decodes columns in parallel;
- a Python file object is read without pre-buffering and without threads: each column
  chunk is read and decoded on the calling thread, so nothing of it outlives the call and
  only the columns asked for are read.

A path, or a file pyarrow opened itself (``pa.OSFile``, ``pa.memory_map``), needs none of
this.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["arrow_owned", "read_parquet"]


def read_parquet(source: Any, columns: list[str] | None = None) -> pa.Table:
    """Read ``source`` (a file object, bytes, an Arrow buffer or a path) as one table.

    ``columns`` are top-level names or nested paths (``inputs.age``); a nested path keeps
    its struct, narrowed to the fields asked for (``inputs: struct<age>``), and the columns
    come in the order they are first named.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    threads = True
    if isinstance(source, pa.BufferReader):  # over a buffer that may be Python's bytes
        source = source.read_buffer()
    if isinstance(source, bytes | bytearray | memoryview | pa.Buffer):
        source = pa.BufferReader(arrow_owned(source))
    elif not isinstance(source, str | os.PathLike | pa.OSFile | pa.MemoryMappedFile):
        threads = False  # a Python file object (or a stream over one): read on this thread
    table = pq.ParquetFile(source, pre_buffer=False).read(columns=columns, use_threads=threads)
    if columns:
        order = list(dict.fromkeys(c.split(".", 1)[0] for c in columns))
        table = table.select([c for c in order if c in table.column_names])
    return table


def arrow_owned(data: Any) -> pa.Buffer:
    """Return a copy of ``data`` (bytes or any buffer) in Arrow's own memory, which any of
    Arrow's threads may release without the GIL."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(data)
    return sink.getvalue()
