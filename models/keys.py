"""API keys: random, shown once, stored as SHA-256 (keys carry 256 bits, so a fast hash is safe)."""

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, bindparam, or_, select, update
from sqlalchemy.orm import Session

from models.psycopg_direct import PsycopgStatement, attribute_names, run_one, transient
from models.tables import ApiKey

KEY_PREFIX = "farm_"
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = 32
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, *, name: str) -> str:
    """Store a new ordinary key with the farm's default limits and return it (shown once)."""
    return issue_api_key(session, name=name)[1]


def issue_api_key(
    session: Session,
    *,
    name: str,
    is_admin: bool = False,
    rate_limit_per_minute: int | None = None,
    max_unfinished: int | None = None,
    monthly_spend_cap_usd: float | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key and return its row and the key; this is the only time the plain key exists.
    A limit left None takes the farm's default (no spend cap)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_hash=hash_key(key),
        key_prefix=key[: len(KEY_PREFIX) + 4],
        is_admin=is_admin,
        rate_limit_per_minute=rate_limit_per_minute,
        max_unfinished=max_unfinished,
        monthly_spend_cap_usd=monthly_spend_cap_usd,
    )
    session.add(row)
    session.flush()
    return row, key


KEY_ATTRIBUTES = attribute_names(ApiKey)
# Every column of the unrevoked key of a hash, in table order. Every request but a poll sends it as it is, on
# psycopg (``models.psycopg_direct``); a poll's read joins the polled prediction to it (``models.poll_read``).
ACTIVE_KEY = select(*(getattr(ApiKey, name) for name in KEY_ATTRIBUTES)).where(
    ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None)
)
ACTIVE_KEY_BY_HASH = PsycopgStatement.compile(ACTIVE_KEY)


def find_active_key(session: Session, key: str) -> ApiKey | None:
    """The unrevoked key matching ``key``, or None; outside the session. One indexed lookup by hash."""
    digest = hash_key(key)
    row = run_one(session, ACTIVE_KEY_BY_HASH.bind(digest=digest))
    return None if row is None else matching(transient(ApiKey, KEY_ATTRIBUTES, row), digest)


def matching(row: ApiKey | None, digest: str) -> ApiKey | None:
    """``row`` if its hash is ``digest``, compared in constant time."""
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row


# Built once, as ACTIVE_KEY_BY_HASH; a no-op when another request recorded the use first.
TOUCH_KEY = (
    update(ApiKey)
    .where(
        ApiKey.id == bindparam("key_id"),
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < bindparam("stale", type_=DateTime(timezone=True))),
    )
    .values(last_used_at=bindparam("now", type_=DateTime(timezone=True)))
)


def touch_key(session: Session, key: ApiKey) -> None:
    """Record that a key was used; at most one write a minute per key, to keep requests read-only (the row
    just read says whether a write is due, so most requests send nothing)."""
    now = datetime.now(UTC)
    if touch_due(key, now):
        session.execute(TOUCH_KEY, touch_values(key, now))


def touch_due(key: ApiKey, now: datetime) -> bool:
    """Whether ``key``'s recorded last use is too old to stand for a use at ``now``."""
    return key.last_used_at is None or key.last_used_at < now - LAST_USED_RESOLUTION


def touch_values(key: ApiKey, now: datetime) -> dict[str, Any]:
    return {"key_id": key.id, "stale": now - LAST_USED_RESOLUTION, "now": now}


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def find_api_key(session: Session, ref: str) -> ApiKey:
    """The key whose id or public prefix (``farm_abcd``) is ``ref``, revoked or not.

    Raises LookupError when no key, or more than one, matches.
    """
    wanted = ref.strip().rstrip("…")  # the prefix as `farm keys list` shows it, ellipsis and all
    match = ApiKey.id == int(wanted) if wanted.isdigit() else ApiKey.key_prefix == wanted
    matches = list(session.scalars(select(ApiKey).where(match)))
    if not matches:
        raise LookupError(f"no API key has id or prefix {ref!r}")
    if len(matches) > 1:
        ids = ", ".join(str(row.id) for row in matches)
        raise LookupError(f"{len(matches)} keys have prefix {ref!r} (ids {ids}): name one by its id")
    return matches[0]


def revoke_api_key(session: Session, ref: str) -> ApiKey:
    """Revoke the key whose id or public prefix is ``ref`` (see find_api_key); revoking twice keeps the first
    time."""
    return revoke_key_row(session, find_api_key(session, ref))


def revoke_key_row(session: Session, row: ApiKey) -> ApiKey:
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.flush()
    return row


def webhook_secret(session: Session, key_id: int) -> str:
    """The key's webhook signing secret, ``whsec_<base64 of 32 random bytes>``: made once, then stable."""
    fresh = new_webhook_secret()
    # Set only while unset, so concurrent first requests agree on one secret.
    session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.webhook_secret.is_(None)).values(webhook_secret=fresh)
    )
    secret = session.scalar(select(ApiKey.webhook_secret).where(ApiKey.id == key_id))
    assert secret is not None
    return secret


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()


def rotate_webhook_secret(session: Session, key_id: int, *, overlap: timedelta) -> tuple[str, datetime]:
    """Replace the key's webhook secret. The old one keeps signing too (a second signature) for
    ``overlap``, so receivers can switch without dropping a webhook. Returns (new secret, overlap end)."""
    current = webhook_secret(session, key_id)
    fresh, until = new_webhook_secret(), datetime.now(UTC) + overlap
    session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(webhook_secret=fresh, previous_webhook_secret=current, previous_webhook_secret_expires_at=until)
    )
    return fresh, until


def signing_secrets(session: Session, key_id: int) -> list[str]:
    """The secrets that sign this key's webhooks now: the current one, then the previous one while its
    overlap lasts. One read; a key that never had a secret gets one here."""
    current, previous, until = session.execute(
        select(ApiKey.webhook_secret, ApiKey.previous_webhook_secret, ApiKey.previous_webhook_secret_expires_at).where(
            ApiKey.id == key_id
        )
    ).one()
    if current is None:
        current = webhook_secret(session, key_id)
    if previous is not None and until is not None and until > datetime.now(UTC):
        return [current, previous]
    return [current]
