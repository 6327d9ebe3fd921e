"""Long-running loops (outbox relay, webhook dispatcher) that outlive a Postgres or Redis restart: when a
connection drops, the loop logs it, pauses and starts again with fresh connections, instead of exiting.
Everything they do is recorded in Postgres, so restarting the loop loses nothing.
"""

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import kombu.exceptions
import psycopg
import redis.exceptions
import sqlalchemy.exc

log = logging.getLogger("farm.reconnecting")

# A server away (restart, failover, network), not a bug: worth waiting for. InconsistencyError is kombu's
# "queue binding missing" while the broker comes back empty and the workers have not declared their queues yet.
CONNECTION_ERRORS = (
    psycopg.OperationalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    kombu.exceptions.InconsistencyError,
)
RECONNECT_PAUSE_S = 1.0


def stop_on_signals(name: str) -> Callable[[], bool]:
    """A flag that SIGTERM or SIGINT sets: the loop finishes its round and returns."""
    stopping = threading.Event()

    def stop(signum: int, _: FrameType | None) -> None:
        log.info("%s stopping on signal %s", name, signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return stopping.is_set


def run_reconnecting(name: str, serve: Callable[[], None], stopping: Callable[[], bool]) -> None:
    """Call ``serve`` (which returns once ``stopping()``) again after each lost connection."""
    while not stopping():
        try:
            serve()
        except CONNECTION_ERRORS as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("%s lost a connection (%s); starting again in %g s", name, detail, RECONNECT_PAUSE_S)
            time.sleep(RECONNECT_PAUSE_S)
