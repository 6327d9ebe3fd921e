"""Whether a key may start another prediction: its cap on unfinished predictions and its monthly spend cap.

Checked in the create transaction with the key's row locked, so concurrent creates of one key are
counted one after another: 20 at once against a cap of 10 admit exactly 10.
"""

from collections.abc import Mapping
from datetime import UTC, datetime

from fastapi import HTTPException
from sqlalchemy import bindparam, func, select

from models.psycopg_direct import BoundStatement, PsycopgStatement, Row
from models.settings import Settings
from models.status import Status
from models.tables import ApiKey, Prediction

UNFINISHED = (Status.STARTING, Status.PROCESSING)

# Separate statements, not one: the counts must read after the lock is granted, to see what the holder committed.
# Sent on psycopg with the create's inserts (api.submit), so the key goes in as a parameter.
LOCK_KEY = PsycopgStatement.compile(select(ApiKey.id).where(ApiKey.id == bindparam("key_id")).with_for_update())
COUNT_UNFINISHED = PsycopgStatement.compile(
    select(func.count())
    .select_from(Prediction)
    .where(Prediction.api_key_id == bindparam("key_id"), Prediction.status.in_(UNFINISHED))
)
SPENT_SINCE = PsycopgStatement.compile(
    select(func.coalesce(func.sum(Prediction.price_usd), 0.0)).where(
        Prediction.api_key_id == bindparam("key_id"), Prediction.created_at >= bindparam("since")
    )
)


def admission_statements(key: ApiKey) -> dict[str, BoundStatement]:
    """Lock the key's row, then count what its caps limit; for ``run_pipelined``, ahead of the create's inserts.
    ``refuse_over_caps`` then judges their rows."""
    statements = {"key_locked": LOCK_KEY.bind(key_id=key.id), "unfinished": COUNT_UNFINISHED.bind(key_id=key.id)}
    if key.monthly_spend_cap_usd is not None:
        month_start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        statements["spent"] = SPENT_SINCE.bind(key_id=key.id, since=month_start)
    return statements


def refuse_over_caps(key: ApiKey, settings: Settings, rows: Mapping[str, Row]) -> None:
    """429 at the unfinished cap or 402 at the spend cap, from the rows of ``admission_statements``."""
    cap = key.max_unfinished or settings.max_unfinished_per_key
    unfinished = int(rows["unfinished"][0])
    if unfinished >= cap:
        raise HTTPException(
            429,
            f"This key has {unfinished} unfinished predictions, the most it may have: wait for one to end "
            "or cancel one, then retry.",
            headers={"Retry-After": "1"},
        )
    if key.monthly_spend_cap_usd is not None:
        spent = float(rows["spent"][0])
        if spent >= key.monthly_spend_cap_usd:
            raise HTTPException(
                402,
                f"This key's spend cap of ${key.monthly_spend_cap_usd:.2f} this month is reached "
                f"(${spent:.2f} charged): an operator can raise it with `farm keys`.",
            )
