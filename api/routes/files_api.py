"""Files a caller uploads to use as model inputs, as Replicate's files API: ``POST /v1/files``,
``GET /v1/files/{id}`` (and ``…/download``). Pass a file's ``urls.get`` as ``image``.

Not to be confused with ``api/routes/files.py``, which serves the local storage backend's files.
"""

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Message, Receive

from api.deps import CurrentKey, SessionDep, SettingsDep, StorageDep
from api.errors import InputError
from api.presenter import file_public
from models.ids import could_be_id, new_file_id
from models.inputs import MAX_IMAGE_BYTES
from models.storage import Storage, upload_key
from models.tables import ApiKey, File
from models.text import NUL_MESSAGE, has_nul

router = APIRouter(prefix="/v1", tags=["files"])

FILE_FIELDS = ("content", "file")  # Replicate's name, and the usual one
MAX_NAME_CHARS, MAX_CONTENT_TYPE_CHARS = 255, 200  # the files table's columns
# Room for the multipart framing and the small fields next to the file.
MAX_BODY_BYTES = MAX_IMAGE_BYTES + 64 * 1024
TOO_LARGE = f"The file is larger than {MAX_IMAGE_BYTES // 2**20} MB: upload a smaller file."


class BodyTooLarge(Exception):
    pass


def capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that stops the upload once more than ``limit`` body bytes arrived (chunked bodies
    declare no length up front)."""
    received = 0

    async def receive_capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return receive_capped


def safe_filename(name: str) -> str:
    """A storage-safe version of a client's file name: no directories, no odd characters."""
    base = PurePosixPath(name.replace("\\", "/")).name
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:100].lstrip(".") or "file"


def check_storable(name: str, content_type: str, metadata: Any) -> None:
    """Refuse (422) what the files table cannot hold, rather than fail in the database."""
    for field, value in (("filename", name), ("type", content_type), ("metadata", metadata)):
        if has_nul(value):
            raise InputError.field(field, NUL_MESSAGE, None)
    if len(name) > MAX_NAME_CHARS:
        raise InputError.field("filename", f"at most {MAX_NAME_CHARS} characters", name[:100] + "…")
    if len(content_type) > MAX_CONTENT_TYPE_CHARS:
        raise InputError.field("type", f"at most {MAX_CONTENT_TYPE_CHARS} characters", content_type[:100] + "…")


def store_upload(
    session: Session, *, key: ApiKey, storage: Storage, data: bytes, name: str, content_type: str, metadata: Any
) -> File:
    file_id = new_file_id()
    sha256 = hashlib.sha256(data).hexdigest()
    storage_key = upload_key(file_id, safe_filename(name))
    storage.put(storage_key, data, content_type)
    file = File(
        id=file_id,
        api_key_id=key.id,
        name=name[:255],
        content_type=content_type[:200],
        size=len(data),
        sha256=sha256,
        storage_key=storage_key,
        file_metadata=metadata,
    )
    session.add(file)
    session.flush()
    session.refresh(file)  # created_at from the database
    return file


# The form is read by hand (capped while it streams), so its schema is declared here for the docs and clients.
UPLOAD_FORM = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "format": "binary", "description": "The file (or field 'file')."},
                    "file": {"type": "string", "format": "binary", "description": "The file, if not in 'content'."},
                    "metadata": {"type": "string", "description": "A JSON object kept with the file."},
                    "filename": {"type": "string", "description": "Name to record instead of the part's own."},
                    "type": {"type": "string", "description": "Content type to record instead of the part's own."},
                },
            }
        }
    },
}


@router.post("/files", status_code=201, openapi_extra={"requestBody": UPLOAD_FORM})
async def create_file(
    request: Request, key: CurrentKey, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> JSONResponse:
    """Upload a file (multipart/form-data field ``content``, or ``file``; optional ``metadata`` JSON object)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, TOO_LARGE)  # refused before reading the body
    try:
        form = await Request(request.scope, capped(request.receive, MAX_BODY_BYTES)).form(max_files=1, max_fields=8)
    except BodyTooLarge:
        raise HTTPException(413, TOO_LARGE) from None
    try:
        upload = next((form[name] for name in FILE_FIELDS if isinstance(form.get(name), UploadFile)), None)
        if not isinstance(upload, UploadFile):
            raise InputError.field(
                "content", "send the file as multipart/form-data field 'content' (curl -F content=@photo.png)", None
            )
        metadata: Any = {}
        if isinstance(raw_metadata := form.get("metadata"), str):
            try:
                metadata = json.loads(raw_metadata)
            except ValueError:
                metadata = None
            if not isinstance(metadata, dict):
                raise InputError.field("metadata", "must be a JSON object", raw_metadata[:200])
        data = await upload.read()
        if len(data) > MAX_IMAGE_BYTES:
            raise HTTPException(413, TOO_LARGE)
        # Replicate's optional form fields win over the file part's own name and type.
        name, content_type = form.get("filename"), form.get("type")
        if not isinstance(name, str) or not name:
            name = upload.filename or "file"
        if not isinstance(content_type, str) or not content_type:
            content_type = upload.content_type or "application/octet-stream"
        check_storable(name, content_type, metadata)
        file = await run_in_threadpool(
            store_upload,
            session,
            key=key,
            storage=storage,
            data=data,
            name=name,
            content_type=content_type,
            metadata=metadata,
        )
    finally:
        await form.close()
    return JSONResponse(status_code=201, content=file_public(file, public_url=settings.public_url))


def owned_file(session: Session, key: ApiKey, file_id: str) -> File:
    """The caller's file; another key's ids are answered like unknown ones."""
    file = session.get(File, file_id) if could_be_id(file_id) else None
    if file is None or file.api_key_id != key.id:
        raise HTTPException(404, f"File {file_id!r} not found.")
    return file


@router.get("/files/{file_id}")
def get_file(file_id: str, session: SessionDep, key: CurrentKey, settings: SettingsDep) -> dict[str, Any]:
    """The file object."""
    return file_public(owned_file(session, key, file_id), public_url=settings.public_url)


@router.get(
    "/files/{file_id}/download",
    response_class=Response,
    responses={200: {"description": "The bytes, with the type they were uploaded with.", "content": {"*/*": {}}}},
)
def download_file(file_id: str, session: SessionDep, key: CurrentKey, storage: StorageDep) -> Response:
    """The file's bytes, for its owner."""
    file = owned_file(session, key, file_id)
    return Response(
        storage.get(file.storage_key),
        media_type=file.content_type,
        # Whatever was uploaded, a browser must not render it as a page of this origin.
        headers={"Content-Disposition": "attachment", "X-Content-Type-Options": "nosniff"},
    )
