"""``Idempotency-Key`` on creates (Stripe's semantics, IETF draft): the same key with the same request
answers with the first prediction and starts no second job; with another request it is refused (422).
Scoped per API key; concurrent duplicates wait on a lock and then find the first one's record."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import InputError
from models.tables import IdempotencyKey, Prediction

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def fingerprint(request: dict[str, Any]) -> str:
    """SHA-256 of the request as the farm understood it (model, input, webhook, deadline)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def replay(session: Session, *, api_key_id: int, key: str, request_hash: str, ttl: timedelta) -> Prediction | None:
    """The prediction a previous create with this key made, or None (then create, and ``remember``).

    Holds a transaction-scoped lock on (API key, key) until the caller commits, so a concurrent
    duplicate waits here and then replays instead of creating a second job.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InputError.field(HEADER, f"give 1 to {MAX_KEY_LENGTH} characters, e.g. a UUID", key[:MAX_KEY_LENGTH])
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"{api_key_id}:{key}", 0))))
    record = session.get(IdempotencyKey, (api_key_id, key))
    if record is not None and record.created_at < datetime.now(UTC) - ttl:
        session.delete(record)  # expired: the key may start a new request
        session.flush()
        record = None
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise InputError.field(
            HEADER,
            "this key was used with a different request; send a new Idempotency-Key for a new request",
            key,
        )
    return session.get(Prediction, record.prediction_id)


def remember(session: Session, *, api_key_id: int, key: str, request_hash: str, prediction_id: str) -> None:
    session.add(IdempotencyKey(api_key_id=api_key_id, key=key, request_hash=request_hash, prediction_id=prediction_id))
    session.flush()
