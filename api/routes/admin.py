"""``/v1/admin``: key management and any key's usage, for admin keys only (``farm keys create --admin``).

An ordinary key gets 403 here: the routes exist for everyone and the caller lacks the role (elsewhere another
key's resources answer 404, as if they did not exist).
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import CurrentKey, SessionDep
from api.json_types import INTEGRAL_FLOATS
from api.routes.usage import usage_of_key
from models.keys import issue_api_key, list_api_keys, revoke_key_row
from models.tables import ApiKey
from models.text import StoredText
from models.usage import Period

ADMIN_ONLY: dict[int | str, dict[str, Any]] = {403: {"description": "The caller's key is not an admin key."}}

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ADMIN_ONLY)


def admin_key(key: CurrentKey) -> ApiKey:
    if not key.is_admin:
        raise HTTPException(
            403,
            "This needs an admin key: an operator makes one with `farm keys create --name NAME --admin`, "
            "or turns a key into one with `farm keys set ID --admin`.",
        )
    return key


MAX_INTEGER = 2**31 - 1  # key ids and limits are Postgres integers
AdminKey = Annotated[ApiKey, Depends(admin_key)]
KeyId = Annotated[int, Path(description="The key's id, as `GET /v1/admin/keys` lists it.", ge=1, le=MAX_INTEGER)]

Limit = Annotated[int, Field(ge=1, le=MAX_INTEGER), INTEGRAL_FLOATS]
RateLimit = Annotated[
    Limit | None, Field(description="Requests per minute (creates and reads each); null: the farm's default.")
]
MaxUnfinished = Annotated[Limit | None, Field(description="Unfinished predictions at once; null: the farm's default.")]
SpendCap = Annotated[
    float | None, Field(ge=0, description="USD of charged price per calendar month (UTC); null: no cap.")
]


class KeyLimits(BaseModel):
    model_config = ConfigDict(strict=True)

    rate_limit_per_minute: RateLimit = None
    max_unfinished: MaxUnfinished = None
    monthly_spend_cap_usd: SpendCap = None


class KeyCreate(KeyLimits):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: StoredText = Field(min_length=1, max_length=200, description="Who or what the key is for.", examples=["ci"])
    is_admin: bool = Field(default=False, description="May manage keys and see every key's usage.")


class KeyChange(KeyLimits):
    """Only the fields sent change; a limit sent as null goes back to the farm's default (no spend cap)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    is_admin: bool = Field(
        default=False, description="Make it an admin key (true) or an ordinary one; absent: unchanged."
    )


class KeyPublic(KeyLimits):
    """A key as operators see it: never the key itself (only its prefix) nor its hash or webhook secret."""

    id: int
    name: str
    prefix: str = Field(description="The key's first characters, to recognize it.")
    is_admin: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="The new key: shown this once, stored only as a hash.")


class KeyList(BaseModel):
    results: list[KeyPublic]


def key_public(row: ApiKey) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.key_prefix,
        "is_admin": row.is_admin,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
        "rate_limit_per_minute": row.rate_limit_per_minute,
        "max_unfinished": row.max_unfinished,
        "monthly_spend_cap_usd": row.monthly_spend_cap_usd,
    }


def key_by_id(session: Session, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise HTTPException(404, f"No API key has id {key_id}: GET /v1/admin/keys lists them.")
    return row


@router.get("/keys", response_model=KeyList)
def list_keys(_: AdminKey, session: SessionDep) -> dict[str, Any]:
    """Every key, revoked ones included, oldest first."""
    return {"results": [key_public(row) for row in list_api_keys(session)]}


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(_: AdminKey, session: SessionDep, body: KeyCreate) -> dict[str, Any]:
    """Create a key; the answer holds the key itself, this once."""
    row, key = issue_api_key(session, **body.model_dump())
    session.refresh(row)  # created_at comes from the database
    return {**key_public(row), "key": key}


@router.patch("/keys/{key_id}", response_model=KeyPublic)
def change_key(_: AdminKey, session: SessionDep, key_id: KeyId, body: KeyChange) -> dict[str, Any]:
    """Change a key's limits or role; it applies from the key's next request."""
    row = key_by_id(session, key_id)
    for field in body.model_fields_set:
        setattr(row, field, getattr(body, field))
    session.flush()
    return key_public(row)


@router.post("/keys/{key_id}/revoke", response_model=KeyPublic)
def revoke_key(_: AdminKey, session: SessionDep, key_id: KeyId) -> dict[str, Any]:
    """Revoke a key: its requests get 401 from now on. Revoking twice keeps the first time."""
    return key_public(revoke_key_row(session, key_by_id(session, key_id)))


@router.get("/keys/{key_id}/usage")
def key_usage(
    _: AdminKey,
    session: SessionDep,
    key_id: KeyId,
    since: Annotated[str | None, Query(description="Start (inclusive); default: the 1st of this month, UTC.")] = None,
    until: Annotated[str | None, Query(description="End (exclusive); default: now.")] = None,
    period: Annotated[Period, Query(description="Rows per UTC `day` or `month`.")] = "day",
) -> dict[str, Any]:
    """Any key's usage, in the shape of ``GET /v1/usage``."""
    return usage_of_key(session, key_by_id(session, key_id).id, since, until, period)
