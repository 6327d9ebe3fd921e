"""Riding out a short Postgres outage (restart, failover) in the worker: a transaction that fails to reach
the database is retried a bounded number of times with growing pauses, then given up, so that the lease
runs out and the reaper takes the prediction over.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from models.db import session_scope

log = logging.getLogger("farm.worker")

T = TypeVar("T")

# The database could not be reached or dropped the connection (psycopg's OperationalError and friends).
CONNECTION_ERRORS = (OperationalError, InterfaceError)
# About 30 s in all: a Postgres restart or failover, not a long outage (that is the reaper's job).
RETRY_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0)
# No ping before each transaction (a round trip per claim, heartbeat and finish): a connection that a restart
# killed fails the first statement, before anything is written, SQLAlchemy then discards the pool's old
# connections, and the retry (or the next heartbeat) opens a fresh one.
PRE_PING = False


class DatabaseUnavailable(Exception):
    """Postgres stayed unreachable through every retry."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def retrying(database_url: str, what: str, work: Callable[[Session], T], *, autocommit: bool = False) -> T:
    """``work`` in a transaction of its own (``autocommit``: each of its statements on its own, see
    ``models.db.session_scope``), run again on a connection error after each pause in RETRY_PAUSES_S. The work
    must be safe to repeat: the lifecycle's compare-and-set writes are, and a retried finish recognises its own
    commit when only the answer was lost."""
    for pause in RETRY_PAUSES_S:
        try:
            with session_scope(database_url, pre_ping=PRE_PING, autocommit=autocommit) as session:
                return work(session)
        except CONNECTION_ERRORS as error:
            log.warning("%s: database unreachable (%s); retrying in %g s", what, first_line(error), pause)
            time.sleep(pause)
    try:
        with session_scope(database_url, pre_ping=PRE_PING, autocommit=autocommit) as session:
            return work(session)
    except CONNECTION_ERRORS as error:
        raise DatabaseUnavailable(f"{what}: database unreachable after {len(RETRY_PAUSES_S)} retries") from error
