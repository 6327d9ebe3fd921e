"""Output files of the local-directory storage backend (S3 backends hand out presigned URLs)."""

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from api.deps import StorageDep
from models.storage import CONTENT_TYPES, LocalStorage

router = APIRouter(tags=["files"])


@router.get("/files/{key:path}")
def get_file(key: str, storage: StorageDep) -> FileResponse:
    """One stored output. Keys hold 128-bit random prediction ids, so they are not guessable."""
    if not isinstance(storage, LocalStorage):
        raise HTTPException(404, "This farm stores outputs in S3; use the URLs in the prediction's output.")
    try:
        path = storage.path(key)
    except ValueError:
        raise HTTPException(404, "File not found.") from None
    if not path.is_file():
        raise HTTPException(404, "File not found.")
    media_type = CONTENT_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
    return FileResponse(path, media_type=media_type)
