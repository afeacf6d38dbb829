"""Hashing: sha256 for content addresses, xxh3 where only change detection is needed."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import xxhash

__all__ = [
    "CHUNK_SIZE",
    "all_sha256",
    "fast_digest_file",
    "is_sha256",
    "sha256_bytes",
    "sha256_chunks",
    "sha256_file",
    "sha256_stream",
]

#: Bytes read at a time when streaming; large enough to amortize syscalls.
CHUNK_SIZE = 1024 * 1024


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> str:
    """Return the hex sha256 of everything left in ``stream``, read in chunks."""
    h = hashlib.sha256()
    while chunk := stream.read(chunk_size):
        h.update(chunk)
    return h.hexdigest()


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    """Return the hex sha256 of the concatenation of ``chunks``."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of the file at ``path``, streamed."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fast_digest_file(path: str | os.PathLike[str]) -> str:
    """Return a 128-bit xxh3 of the file at ``path``: fast change detection, not identity."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: str) -> bool:
    """Return whether ``value`` is 64 lowercase hex characters.

    >>> is_sha256("a" * 64), is_sha256("A" * 64), is_sha256("a" * 63)
    (True, False, False)
    """
    # A compiled pattern: checking thousands of digests per dataset version is on the hot path.
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def all_sha256(values: Sequence[str]) -> bool:
    """Return whether every one of ``values`` is 64 lowercase hex characters, checked all
    together: a dataset version checks thousands of digests at once.

    >>> all_sha256(["a" * 64, "b" * 64]), all_sha256(["a" * 64, "a" * 63]), all_sha256([])
    (True, False, True)
    """
    if not all(isinstance(v, str) and len(v) == 64 for v in values):
        return False
    joined = "".join(values)
    try:
        raw = bytes.fromhex(joined)  # in C; it skips spaces, which the length then catches
    except ValueError:
        return False
    return len(raw) == 32 * len(values) and joined == joined.lower()
