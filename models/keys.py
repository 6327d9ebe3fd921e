"""API keys: random, shown once, stored as SHA-256 (keys carry 256 bits, so a fast hash is safe)."""

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models.tables import ApiKey

KEY_PREFIX = "farm_"
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = 32
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, *, name: str) -> str:
    """Store a new key and return it; this is the only time the plain key exists."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, key_hash=hash_key(key), key_prefix=key[: len(KEY_PREFIX) + 4]))
    session.flush()
    return key


def find_active_key(session: Session, key: str) -> ApiKey | None:
    """The unrevoked key matching ``key``, or None. One indexed lookup by hash."""
    digest = hash_key(key)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row


def touch_key(session: Session, key_id: int) -> None:
    """Record that a key was used; at most one write a minute per key, to keep requests read-only."""
    now = datetime.now(UTC)
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
    )


def webhook_secret(session: Session, key_id: int) -> str:
    """The key's webhook signing secret, ``whsec_<base64 of 32 random bytes>``: made once, then stable."""
    fresh = WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()
    # Set only while unset, so concurrent first requests agree on one secret.
    session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.webhook_secret.is_(None)).values(webhook_secret=fresh)
    )
    secret = session.scalar(select(ApiKey.webhook_secret).where(ApiKey.id == key_id))
    assert secret is not None
    return secret
