"""API keys: random, shown once, stored as SHA-256 (keys carry 256 bits, so a fast hash is safe)."""

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from models.tables import ApiKey

KEY_PREFIX = "farm_"
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
