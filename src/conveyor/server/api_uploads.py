"""Resumable uploads: a large artifact sent in chunks, each its own request, so a dropped
connection costs one chunk, not the file.

    POST   /projects/{p}/uploads                {"size": N}        -> {"id", "offset": 0, "chunk"}
    PUT    /projects/{p}/uploads/{id}?offset=K  (K bytes already)  -> {"offset": K + len}
    GET    /projects/{p}/uploads/{id}                              -> {"offset", "size"}
    POST   /projects/{p}/uploads/{id}/artifact  {"run_id", "name", "sha256", ...} -> the link
    DELETE /projects/{p}/uploads/{id}

A chunk is appended only at the offset the server holds (a resent chunk after a lost answer
is answered with the offset, not appended twice). Completing checks the size and the SHA-256
the client computed, then stores the file in the artifact store and links it to the run.

Sessions live in files under the server's state folder (``.conveyor/uploads``), so they
outlive a restart and are shared by the server's worker processes; each is its creator's
(nobody else can append to or complete it) and is removed when completed, aborted, or a day
after it was started.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import anyio
from fastapi import Query, Request
from pydantic import BaseModel, Field

from conveyor.core.errors import (
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
)
from conveyor.core.ids import new_id
from conveyor.core.names import validate_artifact_path
from conveyor.server.rules import Api, Call, need

api = Api(prefix="/api/v1/projects/{project}")

#: The chunk size the server asks for (under the 32 MiB bound of a request body).
CHUNK = 8 << 20
#: A session left this long is removed (when the next one starts).
STALE_AFTER = 24 * 3600
_ID = re.compile(r"[0-9A-Z]{26}")


class NewUpload(BaseModel):
    size: int = Field(ge=0, description="the file's size in bytes")


class Completion(BaseModel):
    run_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=1000)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the whole file")
    media_type: str | None = Field(default=None, max_length=100)
    replace: bool = False


def _folder(call: Call) -> Path:
    folder = Path(call.state.root.settings.root) / ".conveyor" / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _session(call: Call, upload_id: str) -> tuple[Path, dict[str, Any]]:
    """The session's data file and record; 404 unless it is the caller's, in this project."""
    assert call.project is not None
    if not _ID.fullmatch(upload_id):
        raise NotFoundError(f"No upload {upload_id!r}.")
    folder = _folder(call)
    try:
        record = json.loads((folder / f"{upload_id}.json").read_text())
    except (OSError, ValueError):
        raise NotFoundError(f"No upload {upload_id!r} (completed, aborted or expired).") from None
    if record.get("project_id") != call.project.id or record.get("user") != call.actor:
        raise NotFoundError(f"No upload {upload_id!r}.")
    return folder / f"{upload_id}.part", record


def _sweep(folder: Path) -> None:
    """Remove sessions started more than a day ago."""
    cutoff = time.time() - STALE_AFTER
    for record in folder.glob("*.json"):
        with contextlib.suppress(OSError):
            if record.stat().st_mtime < cutoff:
                record.with_suffix(".part").unlink(missing_ok=True)
                record.unlink()


@api.post("/uploads", status_code=201)
def start_upload(project: str, body: NewUpload, call: Call = need("editor")) -> Any:
    """Start a resumable upload of ``size`` bytes; send it in chunks of ``chunk`` bytes."""
    assert call.project is not None
    limit = call.state.max_artifact_bytes
    if body.size > limit:
        from conveyor.server.api_tracking import PayloadTooLargeError

        raise PayloadTooLargeError(limit)
    folder = _folder(call)
    _sweep(folder)
    upload_id = new_id()
    (folder / f"{upload_id}.part").touch()
    record = {"project_id": call.project.id, "user": call.actor, "size": body.size}
    temp = folder / f".{upload_id}.json.tmp"
    temp.write_text(json.dumps(record))
    os.replace(temp, folder / f"{upload_id}.json")
    return {"id": upload_id, "offset": 0, "size": body.size, "chunk": CHUNK}


@api.get("/uploads/{upload_id}")
def upload_status(project: str, upload_id: str, call: Call = need("editor")) -> Any:
    """How many bytes the server holds: where to resume."""
    part, record = _session(call, upload_id)
    return {"id": upload_id, "offset": part.stat().st_size, "size": record["size"]}


@api.put("/uploads/{upload_id}")
async def upload_chunk(
    project: str,
    upload_id: str,
    request: Request,
    offset: int = Query(ge=0, description="the bytes sent before this chunk"),
    call: Call = need("editor"),
) -> Any:
    """Append the body at ``offset``; a chunk the server already holds is not appended again
    (the answer says where the file ends), one past the end is refused."""
    part, record = await anyio.to_thread.run_sync(_session, call, upload_id)
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if offset + len(data) > record["size"]:
            raise InvalidArgumentError(
                f"The chunk at offset {offset} runs past the upload's size ({record['size']})."
            )

    def append() -> int:
        with open(part, "ab") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # one writer at a time, across worker processes
            held = os.fstat(f.fileno()).st_size
            if offset > held:
                raise ConflictError(
                    f"The upload holds {held} bytes; a chunk at offset {offset} leaves a gap.",
                    hint="Ask GET .../uploads/ID for the offset and resume from there.",
                )
            if offset + len(data) > held:  # new bytes (a resent chunk may overlap the end)
                f.write(data[held - offset :])
                f.flush()
                os.fsync(f.fileno())
            return os.fstat(f.fileno()).st_size

    return {"id": upload_id, "offset": await anyio.to_thread.run_sync(append)}


@api.post("/uploads/{upload_id}/artifact")
def complete_upload(
    project: str, upload_id: str, body: Completion, call: Call = need("editor")
) -> Any:
    """Store the whole upload as run ``run_id``'s artifact ``name`` once its size and SHA-256
    match; the session is removed."""
    from conveyor.server.api_tracking import _check_media_type, _check_owner, _link_json

    validate_artifact_path(body.name)
    if body.media_type is not None:
        _check_media_type(body.media_type)
    part, record = _session(call, upload_id)
    held = part.stat().st_size
    if held != record["size"]:
        raise ConflictError(
            f"The upload holds {held} of its {record['size']} bytes.",
            hint="Send the rest, from the offset GET .../uploads/ID gives.",
        )
    owner = _check_owner(call, "run", body.run_id)
    try:
        with call:
            link = call.workspace.log_artifact(
                part,
                owner,
                body.name,
                media_type=body.media_type,
                replace=body.replace,
                expect_digest=body.sha256,
            )
    except IntegrityError as e:  # the bytes held are not the sender's: start over
        _remove(part)
        raise ConflictError(e.message, hint="Start a new upload and send the file again.") from e
    _remove(part)
    return _link_json(link)


@api.delete("/uploads/{upload_id}")
def abort_upload(project: str, upload_id: str, call: Call = need("editor")) -> Any:
    """Drop an upload and what it holds."""
    part, _ = _session(call, upload_id)
    _remove(part)
    return {"id": upload_id, "aborted": True}


def _remove(part: Path) -> None:
    part.with_suffix(".json").unlink(missing_ok=True)
    part.unlink(missing_ok=True)
