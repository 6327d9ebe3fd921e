"""Dependencies declared once: settings, a DB session per request, storage, the caller's key."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.rate_limit import STATE_KEY, check_rate
from models.db import get_read_engine, get_read_sessionmaker, get_sessionmaker, run_raw_read
from models.ids import could_be_id
from models.keys import find_active_key, touch_key
from models.poll_read import Polled, read_polled
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


def find_and_touch_key(session: Session, key: str) -> ApiKey | None:
    """The caller's key, its use recorded."""
    row = find_active_key(session, key)
    if row is not None:
        touch_key(session, row)
    return row


def require_presented_key(request: Request, x_api_key: str | None) -> str:
    """The key the request presents; 401 when it presents none."""
    key = presented_key(request.headers.get("authorization"), x_api_key)
    if key is None:
        raise HTTPException(
            status_code=401,
            detail="Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


def unknown_key() -> HTTPException:
    return HTTPException(status_code=401, detail="Invalid or revoked API key.", headers={"WWW-Authenticate": "Bearer"})


async def count_request(request: Request, settings: Settings, key: ApiKey) -> None:
    """Count the request against the key's rate limit (429 when over); its headers go on the response."""
    setattr(request.state, STATE_KEY, await check_rate(settings, key, request.method))


async def get_current_key(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    x_api_key: Annotated[str | None, Security(api_key_scheme)],
) -> ApiKey:
    """The caller's key, looked up in the request's own transaction (one connection per request)."""
    row = await run_in_threadpool(find_and_touch_key, session, require_presented_key(request, x_api_key))
    if row is None:
        raise unknown_key()
    await count_request(request, settings, row)
    return row


def polling(*, with_standing: bool) -> Callable[..., Awaitable[Polled]]:
    """The dependency of the async polling routes: the caller's key and the prediction the path names (theirs
    only), in one statement on the read pool (``models.poll_read``), so no thread is taken; ``with_standing``,
    its queue standing too, for the routes that show it."""

    async def get_polled(
        request: Request,
        settings: SettingsDep,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        x_api_key: Annotated[str | None, Security(api_key_scheme)],
    ) -> Polled:
        key = require_presented_key(request, x_api_key)
        named = (request.path_params.get(name) for name in POLLED_ID_PARAMS)
        # An id that cannot be one matches no row, and the key is still looked up.
        polled_id = next((value for value in named if value is not None and could_be_id(value)), "")
        engine = get_read_engine(settings.database_url, prepared=settings.database_prepared_statements)
        polled = await run_raw_read(
            engine, lambda connection: read_polled(connection, key, polled_id, with_standing=with_standing)
        )
        if polled is None:
            raise unknown_key()
        await count_request(request, settings, polled.key)
        return polled

    return get_polled


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]
PolledDep = Annotated[Polled, Depends(polling(with_standing=False))]
PolledWithStanding = Annotated[Polled, Depends(polling(with_standing=True))]


def key_prediction(session: Session, key: ApiKey, prediction_id: str) -> Prediction | None:
    """The key's own prediction of that id; None for another key's, as for an unknown one."""
    prediction = session.get(Prediction, prediction_id) if could_be_id(prediction_id) else None
    return prediction if prediction is not None and prediction.api_key_id == key.id else None


def owned_prediction(session: Session, key: ApiKey, prediction_id: str) -> Prediction:
    """The caller's prediction; 404 when they have none of that id."""
    return found(key_prediction(session, key, prediction_id), prediction_id)


def found(prediction: Prediction | None, prediction_id: str) -> Prediction:
    """``prediction``, or the native 404 for ``prediction_id`` (``key_prediction``, or a poll's ``Polled``)."""
    if prediction is None:
        raise HTTPException(404, f"Prediction {prediction_id!r} not found.")
    return prediction
