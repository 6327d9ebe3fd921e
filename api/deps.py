"""Dependencies declared once: settings, a DB session per request, storage, the caller's key."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.rate_limit import STATE_KEY, check_rate
from models.db import get_read_sessionmaker, get_sessionmaker, run_read
from models.ids import could_be_id
from models.keys import find_active_key, find_active_key_loading, touch_key
from models.settings import Settings, get_settings
from models.storage import Storage, storage_from_settings
from models.tables import ApiKey, Prediction


async def current_settings() -> Settings:
    """The process's settings. Async because it never blocks: FastAPI runs each sync dependency on a
    worker thread, a hop that costs more than the call."""
    return get_settings()


SettingsDep = Annotated[Settings, Depends(current_settings)]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retry-safe create: the same key with the same request answers with the first prediction "
        "(kept 24 h); with a different request, 422.",
    ),
]

# Schemes the peers' clients send: Replicate "Bearer"/"Token", fal "Key".
AUTH_SCHEMES = ("bearer", "token", "key")
# The path parameters that name the prediction a polling route reads: GET /v1/predictions/{prediction_id},
# Eachlabs' GET /{prediction_id}, fal's GET …/requests/{request_id}/status.
POLLED_ID_PARAMS = ("prediction_id", "request_id")


async def get_session(settings: SettingsDep) -> AsyncIterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back if it raises. Async because
    opening it sends nothing (its connection is taken at its first statement): only its end takes a thread."""
    session = get_sessionmaker(settings.database_url)()
    session.begin()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(end_session, session, commit=False)
        raise
    await run_in_threadpool(end_session, session, commit=True)


def end_session(session: Session, *, commit: bool) -> None:
    """Commit or roll back the session's transaction, and give its connection back to the pool."""
    with session:
        if commit:
            session.commit()
        else:
            session.rollback()


# scope="function": commit before the response is sent, so a client's next request sees the row.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def read_sessions(settings: Settings) -> async_sessionmaker[AsyncSession]:
    """Sessions of the read pool (``models.db.get_read_sessionmaker``), prepared statements as the settings say."""
    return get_read_sessionmaker(settings.database_url, prepared=settings.database_prepared_statements)


async def get_read_session(settings: SettingsDep) -> AsyncIterator[AsyncSession]:
    """An autocommit session on an async connection (``read_sessions``) for the hot paths: the caller's key,
    then a poll's reads on the same connection; no thread is taken."""
    async with read_sessions(settings)() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


async def get_storage(settings: SettingsDep) -> Storage:
    """The process's storage (built once, no I/O); async for the same reason as ``current_settings``."""
    return storage_from_settings(settings)


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


# Declared as security schemes, so the OpenAPI schema says how to authenticate (the Authorize button of /docs,
# clients, the fuzzer); the Authorization header is read raw as well, for the Token and Key schemes.
bearer_scheme = HTTPBearer(
    scheme_name="Bearer",
    description="Authorization: Bearer <key> (also Token <key>, as Replicate's client sends, or Key <key>, as fal's).",
    auto_error=False,
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    scheme_name="X-API-Key",
    description="X-API-Key: <key>, as Eachlabs' client sends.",
    auto_error=False,
)


def find_and_touch_key(
    session: Session, key: str, polled_id: str | None = None, with_standing: bool = False
) -> ApiKey | None:
    """The caller's key, its use recorded; with ``polled_id``, that prediction (``with_standing``, and its queue
    standing) is loaded in the same round trip."""
    if polled_id is None:
        row = find_active_key(session, key)
    else:
        row = find_active_key_loading(session, key, polled_id, with_standing=with_standing)
    if row is not None:
        touch_key(session, row)
    return row


async def authenticate(
    request: Request,
    settings: Settings,
    x_api_key: str | None,
    lookup: Callable[[str], Awaitable[ApiKey | None]],
) -> ApiKey:
    """The caller's key found by ``lookup``, its request counted against the key's rate limit (429 when over)."""
    key = presented_key(request.headers.get("authorization"), x_api_key)
    if key is None:
        raise HTTPException(
            status_code=401,
            detail="Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    row = await lookup(key)
    if row is None:
        raise HTTPException(
            status_code=401,
            detail="Invalid or revoked API key.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    setattr(request.state, STATE_KEY, await check_rate(settings, row, request.method))
    return row


async def get_current_key(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    x_api_key: Annotated[str | None, Security(api_key_scheme)],
) -> ApiKey:
    """The caller's key, looked up in the request's own transaction (one connection per request)."""
    return await authenticate(
        request, settings, x_api_key, lambda key: run_in_threadpool(find_and_touch_key, session, key)
    )


def reading_key(*, with_standing: bool) -> Callable[..., Awaitable[ApiKey]]:
    """The dependency of the async polling routes: the caller's key, looked up on their read session, so no thread
    is taken. The prediction the path names comes in the same statement, so the route's own read of it is free;
    ``with_standing``, its queue standing too, for the routes that show it."""

    async def get_reading_key(
        request: Request,
        session: ReadSessionDep,
        settings: SettingsDep,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        x_api_key: Annotated[str | None, Security(api_key_scheme)],
    ) -> ApiKey:
        named = (request.path_params.get(name) for name in POLLED_ID_PARAMS)
        polled = next((value for value in named if value is not None and could_be_id(value)), None)
        return await authenticate(
            request,
            settings,
            x_api_key,
            lambda key: run_read(session, find_and_touch_key, key, polled, with_standing),
        )

    return get_reading_key


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]
ReadingKey = Annotated[ApiKey, Depends(reading_key(with_standing=False))]
PollingKey = Annotated[ApiKey, Depends(reading_key(with_standing=True))]


def owned_prediction(session: Session, key: ApiKey, prediction_id: str) -> Prediction:
    """The caller's prediction; another key's ids are answered like unknown ones."""
    prediction = session.get(Prediction, prediction_id) if could_be_id(prediction_id) else None
    if prediction is None or prediction.api_key_id != key.id:
        raise HTTPException(404, f"Prediction {prediction_id!r} not found.")
    return prediction
