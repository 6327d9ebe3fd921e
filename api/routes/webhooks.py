"""The caller's webhook settings: the signing secret (Replicate's ``webhooks.default.secret()``), its
rotation, and re-enabling a URL that answered 410 Gone."""

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentKey, SessionDep, SettingsDep
from api.openapi_errors import NativeError
from api.presenter import iso
from models.keys import rotate_webhook_secret, webhook_secret
from models.text import StoredText
from models.webhooks import enable_url

router = APIRouter(prefix="/v1/webhooks/default", tags=["webhooks"])


class UrlBody(BaseModel):
    model_config = ConfigDict(strict=True)

    url: StoredText = Field(description="The webhook URL, exactly as it was given with predictions.")


@router.get("/secret")
def get_default_secret(session: SessionDep, key: CurrentKey) -> dict[str, str]:
    """The secret that signs this key's webhooks (Standard Webhooks, ``whsec_…``); stable per key until rotated."""
    return {"key": webhook_secret(session, key.id)}


@router.post("/secret/rotate")
def rotate_secret(session: SessionDep, key: CurrentKey, settings: SettingsDep) -> dict[str, Any]:
    """Make a new signing secret. Until ``previous_key_expires_at`` webhooks carry two signatures, one per
    secret, so receivers can switch over without rejecting a webhook."""
    overlap = timedelta(seconds=settings.webhook_secret_overlap_seconds)
    secret, until = rotate_webhook_secret(session, key.id, overlap=overlap)
    return {"key": secret, "previous_key_expires_at": iso(until)}


@router.post(
    "/enable", responses={404: {"model": NativeError, "description": "That URL is not disabled for this key."}}
)
def enable(body: UrlBody, session: SessionDep, key: CurrentKey) -> dict[str, str]:
    """Send webhooks to a URL again after it answered 410 Gone."""
    if not enable_url(session, api_key_id=key.id, url=body.url):
        raise HTTPException(404, "That URL is not disabled for this key: webhooks to it are already sent.")
    return {"url": body.url, "status": "enabled"}
