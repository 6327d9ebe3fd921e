"""Dependencies declared once: settings, a DB session per request, storage, the caller's key."""

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Header, HTTPException
from sqlalchemy.orm import Session

from models.db import get_sessionmaker
from models.keys import find_active_key, touch_key
from models.settings import Settings, get_settings
from models.storage import Storage, storage_from_url
from models.tables import ApiKey, Prediction

SettingsDep = Annotated[Settings, Depends(get_settings)]

# Schemes the peers' clients send: Replicate "Bearer"/"Token", fal "Key".
AUTH_SCHEMES = ("bearer", "token", "key")


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    with get_sessionmaker(settings.database_url)() as session, session.begin():
        yield session


# scope="function": commit before the response is sent, so a client's next request sees the row.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@lru_cache
def _storage(storage_url: str, public_url: str) -> Storage:
    return storage_from_url(storage_url, public_url)


def get_storage(settings: SettingsDep) -> Storage:
    return _storage(settings.storage_url, settings.public_url)


StorageDep = Annotated[Storage, Depends(get_storage)]


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from ``Authorization: Bearer|Token|Key <key>`` or ``X-API-Key``."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() in AUTH_SCHEMES and credentials.strip():
            return credentials.strip()
    return None


def get_current_key(
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> ApiKey:
    key = presented_key(authorization, x_api_key)
    if key is None:
        raise HTTPException(
            status_code=401,
            detail="Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    row = find_active_key(session, key)
    if row is None:
        raise HTTPException(
            status_code=401,
            detail="Invalid or revoked API key.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    touch_key(session, row.id)
    return row


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


def owned_prediction(session: Session, key: ApiKey, prediction_id: str) -> Prediction:
    """The caller's prediction; another key's ids are answered like unknown ones."""
    prediction = session.get(Prediction, prediction_id)
    if prediction is None or prediction.api_key_id != key.id:
        raise HTTPException(404, f"Prediction {prediction_id!r} not found.")
    return prediction
