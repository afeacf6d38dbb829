"""Online stores: the latest feature values per entity, read in microseconds.

One interface, two backends chosen by URI: SQLite (``sqlite:///path/online.db``, the
embedded default in ``.conveyor/online.db``) and Redis (``redis://host:port/db``). Each
entity's values of one view are one record (JSON: the event time and the values in the
view's feature order), so reading many features of an entity is one lookup.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from conveyor.core.errors import BackendUnavailableError, InvalidArgumentError

__all__ = ["OnlineStore", "RedisOnlineStore", "SqliteOnlineStore", "open_online_store"]

Record = tuple[int, list[Any]]  # event time (epoch microseconds), values in feature order


#: First byte of a packed record: b"N", the time as int64, then each value as float64 (NaN for
#: null). Views whose features are all numbers are materialized so; JSON records start "[".
PACKED = b"N"


def encode(ts_us: int, values: Sequence[Any]) -> str:
    return json.dumps([ts_us, list(values)], separators=(",", ":"), default=str)


def decode(payload: str | bytes | None) -> Record | None:
    if payload is None:
        return None
    if isinstance(payload, bytes) and payload[:1] == PACKED:
        ts, *values = struct.unpack(f"<q{(len(payload) - 9) // 8}d", payload[1:])
        return ts, [None if v != v else v for v in values]  # NaN stands for null
    ts, values = json.loads(payload)
    return int(ts), values


def pack_many(stamps: Any, values: Any) -> list[bytes]:
    """Packed records from an int64 array of times and an (n, features) float64 array."""
    import numpy as np

    n, width = values.shape
    layout = np.dtype([("tag", "S1"), ("ts", "<i8"), ("v", "<f8", (width,))])
    packed = np.empty(n, dtype=layout)
    packed["tag"] = PACKED
    packed["ts"] = stamps
    packed["v"] = values
    raw = packed.tobytes()
    size = layout.itemsize
    return [raw[i * size : (i + 1) * size] for i in range(n)]


def decode_many(payloads: Sequence[str | bytes | None]) -> list[Record | None]:
    """Decode many records at once: packed ones with one NumPy view, JSON ones with one
    parse (a parse per record costs microseconds each)."""
    out: list[Record | None] = [None] * len(payloads)
    packed = [i for i, p in enumerate(payloads) if isinstance(p, bytes) and p[:1] == PACKED]
    if packed:
        import numpy as np

        blobs = [payloads[i] for i in packed]
        width = (len(blobs[0]) - 9) // 8  # type: ignore[arg-type]
        layout = np.dtype([("tag", "S1"), ("ts", "<i8"), ("v", "<f8", (width,))])
        arr = np.frombuffer(b"".join(blobs), dtype=layout)  # type: ignore[arg-type]
        values = arr["v"]
        rows = values.tolist()
        if np.isnan(values).any():  # NaN stands for null
            rows = [[None if x != x else x for x in row] for row in rows]
        for i, ts, row in zip(packed, arr["ts"].tolist(), rows, strict=True):
            out[i] = (ts, row)
    rest = [i for i, p in enumerate(payloads) if p is not None and out[i] is None]
    if rest:
        texts = [
            p.decode() if isinstance(p, bytes) else p
            for p in (payloads[i] for i in rest)
            if p is not None
        ]
        for i, (ts, row) in zip(rest, json.loads("[" + ",".join(texts) + "]"), strict=True):
            out[i] = (int(ts), row)
    return out


class OnlineStore:
    """Latest values per (view, entity key)."""

    uri: str

    def write(self, view: str, records: Iterable[tuple[str, int, Sequence[Any]]]) -> int:
        """Store ``(key, ts_us, values)`` where ``ts_us`` is newer than what is stored;
        return how many records were written."""
        rows = [(key, ts, encode(ts, values)) for key, ts, values in records]
        return self.write_encoded(
            view, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        )

    def write_encoded(
        self,
        view: str,
        keys: Sequence[str],
        stamps: Sequence[int],
        payloads: Sequence[str | bytes],
    ) -> int:
        """Like :meth:`write`, with each record's values already encoded (``encode`` or
        ``pack_many``); materialization encodes them in bulk."""
        raise NotImplementedError

    def read(self, view: str, keys: Sequence[str]) -> list[Record | None]:
        raise NotImplementedError

    def delete_older(self, view: str, ts_us: int) -> int:
        """Remove the records whose event time is before ``ts_us`` (expired)."""
        raise NotImplementedError

    def newest(self, view: str) -> int | None:
        """The newest event time stored for ``view`` (epoch microseconds), or None."""
        raise NotImplementedError

    def drop(self, view: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqliteOnlineStore(OnlineStore):
    """One table per view: ``key`` primary key, ``ts``, ``payload``; raw sqlite3 for speed."""

    def __init__(self, path: str | Path, namespace: str = "") -> None:
        self.path = Path(path)
        self.namespace = "".join(c for c in namespace.lower() if c.isalnum())
        self.uri = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._tables: set[str] = set()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            except sqlite3.Error as e:
                raise BackendUnavailableError(
                    f"Cannot open the online store {self.path}: {e}."
                ) from e
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _table(self, view: str) -> str:
        # Projects sharing one file keep apart; names are checked ([a-z][a-z0-9_]*, a ULID).
        prefix = f"fv_{self.namespace}_" if self.namespace else "fv_"
        return f'"{prefix}{view}"'

    def _ensure(self, view: str) -> str:
        table = self._table(view)
        if view not in self._tables:
            self._conn().execute(
                f"CREATE TABLE IF NOT EXISTS {table} "
                "(key TEXT PRIMARY KEY, ts INTEGER NOT NULL, payload TEXT NOT NULL) WITHOUT ROWID"
            )
            self._tables.add(view)
        return table

    def write_encoded(
        self,
        view: str,
        keys: Sequence[str],
        stamps: Sequence[int],
        payloads: Sequence[str | bytes],
    ) -> int:
        table = self._ensure(view)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(
                f"INSERT INTO {table} (key, ts, payload) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET ts = excluded.ts, payload = excluded.payload "
                "WHERE excluded.ts >= ts",
                zip(keys, stamps, payloads, strict=True),
            )
            written = conn.total_changes - before
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return written

    def read(self, view: str, keys: Sequence[str]) -> list[Record | None]:
        conn = self._conn()
        table = self._table(view)
        try:
            if len(keys) == 1:
                row = conn.execute(
                    f"SELECT payload FROM {table} WHERE key = ?", (keys[0],)
                ).fetchone()
                return [decode(row[0]) if row else None]
            found: dict[str, str | bytes] = {}
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                marks = ",".join("?" * len(chunk))
                found.update(
                    conn.execute(
                        f"SELECT key, payload FROM {table} WHERE key IN ({marks})", chunk
                    ).fetchall()
                )
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return [None] * len(keys)  # nothing materialized yet
            raise
        return decode_many([found.get(k) for k in keys])

    def delete_older(self, view: str, ts_us: int) -> int:
        table = self._ensure(view)
        return self._conn().execute(f"DELETE FROM {table} WHERE ts < ?", (ts_us,)).rowcount

    def newest(self, view: str) -> int | None:
        table = self._ensure(view)
        value = self._conn().execute(f"SELECT max(ts) FROM {table}").fetchone()[0]
        return None if value is None else int(value)

    def drop(self, view: str) -> None:
        self._conn().execute(f"DROP TABLE IF EXISTS {self._table(view)}")
        self._tables.discard(view)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class RedisOnlineStore(OnlineStore):
    """One Redis string per (project, view, key); MGET reads many in one round trip."""

    def __init__(self, uri: str, namespace: str) -> None:
        try:
            import redis
        except ImportError as e:
            raise InvalidArgumentError(
                "The Redis online store needs redis-py.", hint="pip install 'conveyor-mlops[redis]'"
            ) from e
        self.uri = uri
        self.namespace = namespace
        self._client = redis.Redis.from_url(uri, socket_connect_timeout=5, socket_timeout=30)
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._refused = redis.exceptions.ResponseError  # e.g. a database number it has not
        self._write_script = self._client.register_script(_NEWER_ONLY)

    def _key(self, view: str, key: str) -> str:
        return f"cv:{self.namespace}:{view}:{key}"

    def _index(self, view: str) -> str:
        return f"cvidx:{self.namespace}:{view}"  # a sorted set: key -> event time

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._errors as e:
            raise BackendUnavailableError(
                f"Cannot reach the Redis online store {_redacted(self.uri)}: {e}.",
                hint="Check that Redis runs and the online_uri setting.",
            ) from e
        except self._refused as e:
            if "DB index" not in str(e):
                raise
            raise InvalidArgumentError(
                f"The Redis online store {_redacted(self.uri)} names a database Redis does not "
                f"have: {e}.",
                hint="Use a database number below the server's 'databases' setting (default "
                "16) in online_uri, e.g. redis://host:6379/0.",
            ) from e

    def write_encoded(
        self,
        view: str,
        keys: Sequence[str],
        stamps: Sequence[int],
        payloads: Sequence[str | bytes],
    ) -> int:
        written = 0
        index = self._index(view)
        for start in range(0, len(keys), 2000):
            pipe = self._client.pipeline(transaction=False)
            for key, ts, payload in zip(
                keys[start : start + 2000],
                stamps[start : start + 2000],
                payloads[start : start + 2000],
                strict=True,
            ):
                self._write_script(
                    keys=[self._key(view, key), index], args=[ts, payload, key], client=pipe
                )
            written += sum(int(r) for r in self._call(pipe.execute))
        return written

    def read(self, view: str, keys: Sequence[str]) -> list[Record | None]:
        if not keys:
            return []
        if len(keys) == 1:
            return [decode(self._call(self._client.get, self._key(view, keys[0])))]
        values = self._call(self._client.mget, [self._key(view, k) for k in keys])
        return decode_many(values)

    def delete_older(self, view: str, ts_us: int) -> int:
        index = self._index(view)
        old = self._call(self._client.zrangebyscore, index, "-inf", f"({ts_us}")
        if not old:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for key in old:
            pipe.delete(self._key(view, key.decode() if isinstance(key, bytes) else key))
        pipe.zremrangebyscore(index, "-inf", f"({ts_us}")
        self._call(pipe.execute)
        return len(old)

    def newest(self, view: str) -> int | None:
        found = self._call(self._client.zrevrange, self._index(view), 0, 0, True)
        return int(found[0][1]) if found else None

    def drop(self, view: str) -> None:
        index = self._index(view)
        keys = self._call(self._client.zrange, index, 0, -1)
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(self._key(view, key.decode() if isinstance(key, bytes) else key))
        pipe.delete(index)
        self._call(pipe.execute)

    def close(self) -> None:
        self._client.close()


# Writes only when the record is at least as new as the stored one; keeps the time index.
_NEWER_ONLY = """
local old = redis.call('ZSCORE', KEYS[2], ARGV[3])
if old and tonumber(old) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
return 1
"""


def _redacted(uri: str) -> str:
    from conveyor.core.uris import redact_uri

    return redact_uri(uri)


def open_online_store(uri: str, namespace: str) -> OnlineStore:
    """The online store ``uri`` names (``sqlite:///path`` or ``redis://...``)."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not path:
            raise InvalidArgumentError(
                f"A SQLite online store needs a file: sqlite:///path; got {uri!r}."
            )
        return SqliteOnlineStore(path, namespace)
    if scheme in ("redis", "rediss", "unix"):
        return RedisOnlineStore(uri, namespace)
    raise InvalidArgumentError(
        f"The online store URI {_redacted(uri)!r} has the scheme {scheme!r}; "
        "use sqlite:///path/online.db or redis://host:6379/0."
    )
