"""A poll's one read: the caller's key, their prediction of the polled id and, while it is queued, its standing.

Clients poll every 0.1-0.5 s, so this is the gateway's most frequent statement. Through SQLAlchemy's async session
the statement's execution and the loading of its rows cost the gateway more CPU than Postgres spends answering it.
So it is built with SQLAlchemy, compiled once, and sent on the read pool's psycopg connection as it is; its row
becomes transient ``ApiKey`` and ``Prediction`` objects, which the presenters read as they read loaded ones.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import and_, bindparam, case
from sqlalchemy.orm import aliased

from models.keys import ACTIVE_KEY, KEY_ATTRIBUTES, TOUCH_KEY, hash_key, matching, touch_due, touch_values
from models.psycopg_direct import PsycopgStatement, attribute_names, transient
from models.queue_eta import QueueStanding, standing_columns, standing_of
from models.status import Status
from models.tables import ApiKey, Prediction

_polled = aliased(Prediction, name="polled")
PREDICTION_ATTRIBUTES = attribute_names(Prediction)
# Every column of the key, then of the key's prediction of the polled id (NULLs when there is none), in table order.
ACTIVE_KEY_AND_ITS_PREDICTION = ACTIVE_KEY.add_columns(
    *(getattr(_polled, name) for name in PREDICTION_ATTRIBUTES)
).outerjoin(_polled, and_(_polled.id == bindparam("prediction_id"), _polled.api_key_id == ApiKey.id))
# And, while that is queued, its standing (computed only then: Postgres evaluates only the CASE branch taken).
ACTIVE_KEY_ITS_PREDICTION_AND_STANDING = ACTIVE_KEY_AND_ITS_PREDICTION.add_columns(
    *(
        case((_polled.status == Status.STARTING, column))
        for column in standing_columns(_polled.model, _polled.created_at, _polled.id)
    )
)


@dataclass(frozen=True)
class Polled:
    key: ApiKey
    prediction: Prediction | None  # None: the key has no prediction of the polled id
    standing: QueueStanding | None  # while that prediction is queued, when asked for


_READ = PsycopgStatement.compile(ACTIVE_KEY_AND_ITS_PREDICTION)
_READ_WITH_STANDING = PsycopgStatement.compile(ACTIVE_KEY_ITS_PREDICTION_AND_STANDING)
_TOUCH = PsycopgStatement.compile(TOUCH_KEY)


async def read_polled(
    connection: psycopg.AsyncConnection[Any], key: str, prediction_id: str, *, with_standing: bool
) -> Polled | None:
    """The unrevoked key matching ``key`` with its prediction ``prediction_id`` (``with_standing``, and that
    prediction's queue standing while it is queued), its use recorded; None when no such key."""
    digest, now = hash_key(key), datetime.now(UTC)
    read = (_READ_WITH_STANDING if with_standing else _READ).bind(digest=digest, prediction_id=prediction_id, now=now)
    row = await (await connection.execute(read.sql, read.values)).fetchone()
    if row is None:
        return None
    key_end = len(KEY_ATTRIBUTES)
    prediction_end = key_end + len(PREDICTION_ATTRIBUTES)
    api_key = matching(transient(ApiKey, KEY_ATTRIBUTES, row[:key_end]), digest)
    if api_key is None:
        return None
    prediction = None
    if row[key_end] is not None:  # the prediction's id: NULL when the join found none
        prediction = transient(Prediction, PREDICTION_ATTRIBUTES, row[key_end:prediction_end])
    standing = None
    if with_standing and prediction is not None and prediction.status == Status.STARTING:
        standing = standing_of(*row[prediction_end:])
    if touch_due(api_key, now):
        touch = _TOUCH.bind(**touch_values(api_key, now))
        await connection.execute(touch.sql, touch.values)
    return Polled(api_key, prediction, standing)
