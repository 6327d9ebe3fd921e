"""The caller's webhook signing secret (Replicate's ``webhooks.default.secret()``)."""

from fastapi import APIRouter

from api.deps import CurrentKey, SessionDep
from models.keys import webhook_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.get("/default/secret")
def get_default_secret(session: SessionDep, key: CurrentKey) -> dict[str, str]:
    """The secret that signs this key's webhooks (Standard Webhooks, ``whsec_…``); stable per key."""
    return {"key": webhook_secret(session, key.id)}
