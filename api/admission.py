"""Whether a key may start another prediction: its cap on unfinished predictions and its monthly spend cap.

Checked in the create transaction with the key's row locked, so concurrent creates of one key are
counted one after another: 20 at once against a cap of 10 admit exactly 10.
"""

from datetime import UTC, datetime

from fastapi import HTTPException
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from models.settings import Settings
from models.status import Status
from models.tables import ApiKey, Prediction

UNFINISHED = (Status.STARTING, Status.PROCESSING)


# Two statements, not one: the count must read after the lock is granted, to see what the holder committed.
# Built once (every create runs them); the key goes in as a parameter.
LOCK_KEY = select(ApiKey.id).where(ApiKey.id == bindparam("key_id")).with_for_update()
COUNT_UNFINISHED = (
    select(func.count())
    .select_from(Prediction)
    .where(Prediction.api_key_id == bindparam("key_id"), Prediction.status.in_(UNFINISHED))
)


def admit(session: Session, key: ApiKey, settings: Settings) -> None:
    """Lock the key's row, then refuse with 429 at the unfinished cap or 402 at the spend cap."""
    # Core on the session's connection: nothing to load, and the ORM's execution path costs more than these.
    connection = session.connection()
    connection.execute(LOCK_KEY, {"key_id": key.id})
    cap = key.max_unfinished or settings.max_unfinished_per_key
    unfinished = connection.execute(COUNT_UNFINISHED, {"key_id": key.id}).scalar()
    if unfinished is not None and unfinished >= cap:
        raise HTTPException(
            429,
            f"This key has {unfinished} unfinished predictions, the most it may have: wait for one to end "
            "or cancel one, then retry.",
            headers={"Retry-After": "1"},
        )
    if key.monthly_spend_cap_usd is not None:
        month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        spent = connection.scalar(
            select(func.coalesce(func.sum(Prediction.price_usd), 0.0)).where(
                Prediction.api_key_id == key.id, Prediction.created_at >= month_start
            )
        )
        if spent is not None and spent >= key.monthly_spend_cap_usd:
            raise HTTPException(
                402,
                f"This key's spend cap of ${key.monthly_spend_cap_usd:.2f} this month is reached "
                f"(${spent:.2f} charged): an operator can raise it with `farm keys`.",
            )
