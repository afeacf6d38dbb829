"""Resumable uploads: a large artifact sent in chunks, each its own request, so a dropped
connection costs one chunk, not the file.

    POST   /projects/{p}/uploads                {"size": N}        -> {"id", "offset": 0, "chunk"}
    PUT    /projects/{p}/uploads/{id}?offset=K  (K bytes already)  -> {"offset": K + len}
    GET    /projects/{p}/uploads/{id}                              -> {"offset", "size"}
    POST   /projects/{p}/uploads/{id}/artifact  {"run_id", "name", "sha256", ...} -> the link
    DELETE /projects/{p}/uploads/{id}

A chunk is appended only at the offset the server holds: a chunk resent after a lost answer
is checked against the bytes held and not written twice. Completing checks the size and the
SHA-256 the client computed, stores the file in the artifact store and links it to the run;
completing again (a retry after a lost answer) returns the same link.

Sessions live in files under the server's state folder (``.conveyor/uploads`` of the server's
root): they outlive a restart and are shared by the server's worker processes on one host
(several hosts behind a balancer need that folder shared, or sticky sessions). Each is its
creator's; a user holds at most :data:`MAX_OPEN` at once; one with no chunk for a day is
removed. Every change to a session's files happens under a lock on its data file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from fastapi import Query, Request
from pydantic import BaseModel, Field

from conveyor.core.errors import (
    BackendUnavailableError,
    ConflictError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    RateLimitedError,
)
from conveyor.core.ids import new_id
from conveyor.core.names import validate_artifact_path
from conveyor.server.rules import Api, Call, need

api = Api(prefix="/api/v1/projects/{project}")

#: The chunk size the server asks for, and the largest chunk it takes (a request body is
#: bounded at 32 MiB anyway).
CHUNK = 8 << 20
#: A session with no chunk for this long is removed.
STALE_AFTER = 24 * 3600
#: Sessions one user may hold open in a project at once.
MAX_OPEN = 8
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
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BackendUnavailableError(
            f"The server cannot keep resumable uploads in {folder} ({e.strerror}).",
            hint="Upload in one request (clients do so when this fails), or give the server "
            "a writable root.",
        ) from None
    return folder


def _gone(upload_id: str) -> NotFoundError:
    return NotFoundError(f"No upload {upload_id!r} (completed, aborted or expired).")


def _record(call: Call, folder: Path, upload_id: str, suffix: str) -> dict[str, Any] | None:
    """The session's record (``.json``) or outcome (``.done.json``), if it is the caller's."""
    assert call.project is not None
    try:
        record: dict[str, Any] = json.loads((folder / f"{upload_id}{suffix}").read_text())
    except (OSError, ValueError):
        return None
    if record.get("project_id") != call.project.id or record.get("user") != call.actor:
        return None
    return record


def _session(call: Call, upload_id: str) -> tuple[Path, dict[str, Any]]:
    """The session's data file and record; 404 unless it is the caller's, in this project."""
    if not _ID.fullmatch(upload_id):
        raise _gone(upload_id)
    folder = _folder(call)
    record = _record(call, folder, upload_id, ".json")
    if record is None:
        raise _gone(upload_id)
    return folder / f"{upload_id}.part", record


@contextlib.contextmanager
def _locked(part: Path, upload_id: str) -> Iterator[int]:
    """The data file, open for appending (never created here) and locked; 404 once removed."""
    try:
        fd = os.open(part, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        raise _gone(upload_id) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one change at a time, across worker processes
        if not part.with_suffix(".json").exists():  # removed while we waited for the lock
            raise _gone(upload_id)
        yield fd
    finally:
        os.close(fd)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(record))
    os.replace(temp, path)


def _remove(part: Path) -> None:
    """Drop a session's record, then its data (a reader finds no record first)."""
    part.with_suffix(".json").unlink(missing_ok=True)
    part.unlink(missing_ok=True)


def _sweep(folder: Path) -> None:
    """Remove sessions with no chunk for a day, outcomes kept for a day, and leftovers."""
    cutoff = time.time() - STALE_AFTER
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            if path.stat().st_mtime >= cutoff:
                continue
            if path.suffix == ".part":  # the last chunk's time
                _remove(path)
            elif not path.with_name(path.name.split(".")[0] + ".part").exists():
                path.unlink()  # an outcome, a temp file, a record whose data is gone


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
    mine = [
        r
        for r in folder.glob("*.json")
        if not r.name.endswith(".done.json") and _record(call, folder, r.stem, ".json")
    ]
    if len(mine) >= MAX_OPEN:
        raise RateLimitedError(
            f"You hold {len(mine)} unfinished uploads in this project, the most at once.",
            hint="Finish or abort one (DELETE .../uploads/ID); unfinished ones expire after "
            "a day without a chunk.",
        )
    upload_id = new_id()
    (folder / f"{upload_id}.part").touch()
    record = {"project_id": call.project.id, "user": call.actor, "size": body.size}
    _write_json(folder / f"{upload_id}.json", record)
    return {"id": upload_id, "offset": 0, "size": body.size, "chunk": CHUNK}


@api.get("/uploads/{upload_id}")
def upload_status(project: str, upload_id: str, call: Call = need("editor")) -> Any:
    """How many bytes the server holds: where to resume."""
    part, record = _session(call, upload_id)
    try:
        held = part.stat().st_size
    except FileNotFoundError:
        raise _gone(upload_id) from None
    return {"id": upload_id, "offset": held, "size": record["size"]}


@api.put("/uploads/{upload_id}")
async def upload_chunk(
    project: str,
    upload_id: str,
    request: Request,
    offset: int = Query(ge=0, description="the bytes sent before this chunk"),
    call: Call = need("editor"),
) -> Any:
    """Append the body at ``offset``. Bytes the server already holds are compared, not
    written again (a chunk resent after a lost answer); a chunk past the end is refused."""
    part, record = await anyio.to_thread.run_sync(_session, call, upload_id)
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > CHUNK:
            from conveyor.server.api_tracking import PayloadTooLargeError

            raise PayloadTooLargeError(CHUNK)
        if offset + len(data) > record["size"]:
            raise InvalidArgumentError(
                f"The chunk at offset {offset} runs past the upload's size ({record['size']})."
            )

    def append() -> int:
        with _locked(part, upload_id) as fd:
            held = os.fstat(fd).st_size
            if offset > held:
                raise ConflictError(
                    f"The upload holds {held} bytes; a chunk at offset {offset} leaves a gap.",
                    hint="Ask GET .../uploads/ID for the offset and resume from there.",
                )
            overlap = min(held, offset + len(data)) - offset
            if overlap and os.pread(fd, overlap, offset) != bytes(data[:overlap]):
                raise ConflictError(
                    f"The bytes at offset {offset} differ from those the upload holds: "
                    "the file changed while it was being sent.",
                    hint="Abort this upload and start again.",
                )
            if overlap < len(data):
                os.write(fd, data[overlap:])  # O_APPEND: at the end, which is offset + overlap
                os.fsync(fd)
            return os.fstat(fd).st_size

    return {"id": upload_id, "offset": await anyio.to_thread.run_sync(append)}


@api.post("/uploads/{upload_id}/artifact")
def complete_upload(
    project: str, upload_id: str, body: Completion, call: Call = need("editor")
) -> Any:
    """Store the whole upload as run ``run_id``'s artifact ``name`` once its size and SHA-256
    match. The session is removed; the same call again (a retry) returns the same link."""
    from conveyor.server.api_tracking import _check_media_type, _check_owner, _link_json

    validate_artifact_path(body.name)
    if body.media_type is not None:
        _check_media_type(body.media_type)
    if _ID.fullmatch(upload_id) and (done := _record(call, _folder(call), upload_id, ".done.json")):
        return done["link"]
    part, record = _session(call, upload_id)
    owner = _check_owner(call, "run", body.run_id)
    with _locked(part, upload_id) as fd:
        held = os.fstat(fd).st_size
        if held != record["size"]:
            raise ConflictError(
                f"The upload holds {held} of its {record['size']} bytes.",
                hint="Send the rest, from the offset GET .../uploads/ID gives.",
            )
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
            raise ConflictError(e.message, hint="Start a new upload, send the file again.") from e
        answer = _link_json(link)
        outcome = {"project_id": record["project_id"], "user": record["user"], "link": answer}
        _write_json(part.with_suffix(".done.json"), outcome)
        _remove(part)
    return answer


@api.delete("/uploads/{upload_id}")
def abort_upload(project: str, upload_id: str, call: Call = need("editor")) -> Any:
    """Drop an upload and what it holds."""
    part, _ = _session(call, upload_id)
    with _locked(part, upload_id):
        _remove(part)
    return {"id": upload_id, "aborted": True}
