"""Output files of the local-directory storage backend, behind signed, expiring URLs (S3 backends hand out
presigned URLs)."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from api.deps import StorageDep
from api.openapi_errors import NativeError
from models.storage import CONTENT_TYPES, LocalStorage
from models.url_signing import UrlRejected

router = APIRouter(tags=["files"])


@router.get(
    "/files/{key:path}",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The image.",
            "content": {kind: {} for kind in sorted({*CONTENT_TYPES.values(), "application/octet-stream"})},
        },
        403: {
            "model": NativeError,
            "description": "Not signed, wrongly signed or expired: fetch the prediction again.",
        },
    },
)
def get_file(
    key: str,
    storage: StorageDep,
    expires: Annotated[str | None, Query(description="Unix time the URL expires at, as the farm wrote it.")] = None,
    signature: Annotated[str | None, Query(description="The farm's signature of the key and expiry.")] = None,
) -> FileResponse:
    """One stored output, at the signed URL a prediction's ``output`` gives (valid FARM_OUTPUT_URL_SECONDS)."""
    if not isinstance(storage, LocalStorage) or storage.signer is None:
        raise HTTPException(404, "This farm stores outputs in S3; use the URLs in the prediction's output.")
    try:
        storage.signer.check(key, expires, signature)
    except UrlRejected as rejected:
        raise HTTPException(403, str(rejected)) from None
    try:
        path = storage.path(key)
    except ValueError:
        raise HTTPException(404, "File not found.") from None
    if not path.is_file():
        raise HTTPException(404, "File not found.")
    media_type = CONTENT_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
    return FileResponse(path, media_type=media_type)
