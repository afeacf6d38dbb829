"""Dataset versions through a team server: add (files, folders, tables), list, get and load,
with the same records and errors as embedded.

Adding uploads the files in one multipart request; the server hashes, profiles and records
them exactly as a local add does. Loading, checking out and materializing download each file
of the version (a large file chunk by chunk) and check it against the digest its manifest
records. Diffs, schemas and validation work from those downloads and the server's records;
only push and pull, which copy between artifact stores, need the store itself.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from conveyor.core.errors import IntegrityError, InvalidArgumentError, PermissionDeniedError
from conveyor.core.hashing import CHUNK_SIZE
from conveyor.data import tables, versioning
from conveyor.data.ingest import UNREADABLE_HINT, scan
from conveyor.data.records import Dataset, DatasetVersion, FileEntry, Manifest
from conveyor.data.service import (
    CHUNKS,
    FILES,
    MANIFEST,
    DataService,
    ProgressReporter,
    assemble,
    check_path_given,
)
from conveyor.store.activity import current_activity, note_read
from conveyor.store.client import ServerClient
from conveyor.store.records import ObjectRef
from conveyor.store.workspace import Workspace

__all__ = ["RemoteDataService", "version_from_json"]

#: Version ids asked about in one request (what the server takes at most).
REFS_PER_REQUEST = 100


def version_from_json(d: dict[str, Any]) -> DatasetVersion:
    return DatasetVersion(**{**d, "created_at": datetime.fromisoformat(d["created_at"])})


class RemoteDataService(DataService):
    """:class:`DataService` whose versions a team server keeps. Push and pull need the
    artifact store itself and say so."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        client = ws.remote
        if client is None:
            raise InvalidArgumentError("RemoteDataService needs a workspace on a team server.")
        self.client: ServerClient = client

    def _path(self, *rest: str) -> str:
        return self.client.project_path(self.ws.settings.project, *rest)

    def add(
        self,
        name: str,
        data: Any,
        *,
        description: str = "",
        progress: ProgressReporter | None = None,
    ) -> DatasetVersion:
        """Upload a file, a folder or a table; the server adds it as the next version."""
        import orjson

        versioning.validate_dataset_name(name)
        check_path_given(name, data)
        run = current_activity()
        with ExitStack() as stack:
            parts: list[tuple[str, Any]] = []
            if isinstance(data, str | os.PathLike):
                found = scan(Path(data))
                if not found:
                    raise InvalidArgumentError(f"Cannot add {data}: the folder holds no files.")
                names = [f.name for f in found]
                for i, f in enumerate(found):
                    try:
                        handle = stack.enter_context(open(f.path, "rb"))
                    except PermissionError as e:
                        raise PermissionDeniedError(
                            f"Cannot read {f.path}: {e.strerror}.", hint=UNREADABLE_HINT
                        ) from e
                    parts.append((f"file{i}", (f.name, handle, "application/octet-stream")))
                source = str(Path(data).resolve())
                single = Path(data).is_file()
            else:
                names = ["data.parquet"]
                single = True
                body = tables.write_parquet(tables.table_to_add(data, name))
                parts.append(("file0", ("data.parquet", body, "application/octet-stream")))
                source = "<table>"
            spec = {
                "description": description,
                "files": names,
                "single_file": single,
                "source": source[:2000],
                "run_id": run.id if run is not None and run.kind == "run" else None,
            }
            parts.insert(0, ("spec", ("spec.json", orjson.dumps(spec), "application/json")))
            self.ws.flush_before_remote_write()
            response = self.client.request(
                "POST", self._path("datasets", name, "versions"), files=parts, retry=False
            )
        return version_from_json(response.json())

    def get(self, ref: str) -> DatasetVersion:
        return version_from_json(self.client.get_json(self._path("dataset-versions", ref)))

    def refs(self, version_ids: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(version_ids))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), REFS_PER_REQUEST):  # a URL of bounded length
            body = self.client.get_json(
                self._path("dataset-version-refs"), id=wanted[start : start + REFS_PER_REQUEST]
            )
            found.update(body["refs"])
        return found

    def versions(self, name: str) -> list[DatasetVersion]:
        body = self.client.get_json(self._path("datasets", name, "versions"))
        return [version_from_json(v) for v in body["versions"]]

    def datasets(self) -> list[Any]:
        body = self.client.get_json(self._path("datasets"))
        return [
            Dataset(**{**d, "created_at": datetime.fromisoformat(d["created_at"])})
            for d in body["datasets"]
        ]

    def _download(self, version: DatasetVersion, name: str, digest: str) -> bytes:
        owner = ObjectRef(versioning.VERSION_KIND, version.id)
        with self.ws.open_artifact(owner, name) as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"{name} of {version.ref} arrived damaged (digest mismatch).")
        return data

    def manifest(self, version: DatasetVersion) -> Manifest:
        return Manifest.decode(self._download(version, MANIFEST, version.digest))

    def set_schema(self, ref: str, schema: Any) -> None:
        """Save ``schema`` (a pandera schema or its YAML) on the server with version ``ref``."""
        from conveyor.data.validation import schema_from_yaml, schema_to_yaml

        text = schema if isinstance(schema, str) else schema_to_yaml(schema)
        schema_from_yaml(text, source="the schema to save")  # refuse what cannot be read back
        self.ws.flush_before_remote_write()
        self.client.request(
            "PUT",
            self._path("dataset-versions", ref, "schema"),
            content=text.encode(),
            headers={"Content-Type": "application/yaml"},
        )

    @property
    def _where(self) -> str:
        return f"of the team server {self.client.base_url}"

    def _write_file(self, version: DatasetVersion, entry: FileEntry, dest: Path) -> None:
        owner = ObjectRef(versioning.VERSION_KIND, version.id)
        parts = [(CHUNKS + d, d) for d in entry.chunks] or [(FILES + entry.path, entry.digest)]
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:  # inside a temporary folder the caller renames
            for name, digest in parts:
                h = hashlib.sha256()
                with self.ws.open_artifact(owner, name) as f:
                    while block := f.read(CHUNK_SIZE):
                        h.update(block)
                        out.write(block)
                if h.hexdigest() != digest:
                    raise IntegrityError(
                        f"{name} of {version.ref} arrived damaged (digest mismatch)."
                    )

    def _read_file(self, version: DatasetVersion, entry: FileEntry) -> bytes | bytearray:
        name = (lambda d: CHUNKS + d) if entry.chunks else (lambda d: FILES + entry.path)
        return assemble(entry, lambda d: self._download(version, name(d), d))

    def _used(self, version: DatasetVersion, ref: str) -> None:
        note_read("dataset", ref, version.id)
        run = current_activity()
        if run is not None and run.kind == "run":
            self.ws.flush_before_remote_write()  # the server must know the run first
            self.client.send_json(
                "POST", self._path("runs", run.id, "uses"), {"kind": "dataset", "ref": version.ref}
            )
