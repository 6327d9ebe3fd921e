"""Waiting for a prediction to end, for ``Prefer: wait`` and the synchronous front doors.

The request's transaction commits first (workers must see the job); the answer is then produced
by a :class:`DeferredResponse`, which FastAPI sends after the request's dependencies exited. The
wait itself holds no database connection and no thread: one poller per process looks up every
waited-on prediction in a single short query per tick, whatever the number of waiting requests.
"""

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from api.deps import read_sessions
from api.errors import InputError
from api.presenter import prediction_public
from models.db import get_sessionmaker, libpq_url, run_read
from models.lifecycle import ENDED_CHANNEL
from models.queue_eta import standing_if_queued
from models.settings import Settings
from models.status import TERMINAL, Status
from models.storage import Storage
from models.tables import Prediction

log = logging.getLogger("farm.api.waiting")

# Replicate's header: ``Prefer: wait`` (60 s) or ``Prefer: wait=N`` with N in 1..60.
PREFER_WAIT = re.compile(r"^wait(=([1-9]|[1-9][0-9]|60))?$")
MAX_PREFER_WAIT_S = 60
# A blocking answer leaves this early: the replicate client reads for only N + 0.5 s after
# ``Prefer: wait=N``, so an answer right at the deadline could miss it on a busy gateway.
ANSWER_MARGIN_S = 0.25
# Synchronous front doors (OpenAI images, fal run) wait at most this long: under the OpenAI
# client's 600 s timeout. A longer job goes on and can be polled natively.
MAX_SYNC_WAIT_S = 540.0
# Workers' finalize NOTIFYs at commit, so a waiter wakes at once; this poll only catches what a
# dropped listen connection missed.
POLL_INTERVAL_S = 1.0
# Back-off before reconnecting the listen connection after an error.
RECONNECT_S = 1.0


def parse_prefer_wait(header: str | None) -> int | None:
    """Seconds asked for by ``Prefer: wait[=N]``; None when the header asks for no wait."""
    for preference in (header or "").split(","):
        token = preference.strip()
        if token.partition("=")[0].strip() != "wait":
            continue  # other preferences (respond-async, …) do not apply here
        seconds = token.partition("=")[2]
        # The spec's pattern lets 61-99 through; its text (and this farm) caps the wait at 60 s.
        if PREFER_WAIT.match(token) is None or int(seconds or MAX_PREFER_WAIT_S) > MAX_PREFER_WAIT_S:
            raise InputError.field("Prefer", "use 'wait' or 'wait=N' with N seconds from 1 to 60", header)
        return int(seconds or MAX_PREFER_WAIT_S)
    return None


def terminal_ids(database_url: str, prediction_ids: list[str]) -> set[str]:
    """Which of ``prediction_ids`` have ended; one short session."""
    with get_sessionmaker(database_url)() as session:
        rows = session.scalars(
            select(Prediction.id).where(Prediction.id.in_(prediction_ids), Prediction.status.in_(TERMINAL))
        )
        return set(rows)


class TerminalWatcher:
    """Resolves waiters when their prediction ends: at once from Postgres notifications (one LISTEN
    connection per process, opened on first use), and by a slow poll while anyone waits."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.listener: asyncio.Task[None] | None = None

    async def wait(self, prediction_id: str, timeout_s: float) -> bool:
        """True when the prediction ended within ``timeout_s``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(prediction_id, []).append(future)
        loop = asyncio.get_running_loop()
        if self.listener is None or self.listener.done() or self.listener.get_loop() is not loop:
            self.listener = asyncio.create_task(self.listen())
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = asyncio.create_task(self.poll())
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            remaining = [waiter for waiter in self.waiters.get(prediction_id, []) if waiter is not future]
            if remaining:
                self.waiters[prediction_id] = remaining
            else:
                self.waiters.pop(prediction_id, None)

    def resolve(self, ended: set[str]) -> None:
        for prediction_id in ended:
            for future in self.waiters.pop(prediction_id, []):
                if not future.done():
                    future.set_result(None)

    async def poll(self) -> None:
        while self.waiters:
            try:
                self.resolve(await run_in_threadpool(terminal_ids, self.database_url, list(self.waiters)))
            except Exception:  # the database is away: waiters time out; keep looking meanwhile
                log.exception("looking up waited-on predictions failed")
            await asyncio.sleep(POLL_INTERVAL_S)

    async def listen(self) -> None:
        """Resolve waiters as workers announce ended predictions; reconnect after errors."""
        while True:
            try:
                conninfo = libpq_url(self.database_url)
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                    await connection.execute(f"LISTEN {ENDED_CHANNEL}")
                    async for notification in connection.notifies():
                        self.resolve({notification.payload})
            except Exception:
                log.exception("listening for ended predictions failed; polling until reconnected")
            await asyncio.sleep(RECONNECT_S)


@lru_cache
def watcher(database_url: str) -> TerminalWatcher:
    """The process's watcher for one database."""
    return TerminalWatcher(database_url)


async def wait_until_terminal(settings: Settings, prediction_id: str, timeout_s: float) -> bool:
    """Wait for the prediction to end, at most ``timeout_s``; True when it did."""
    return await watcher(settings.database_url).wait(prediction_id, timeout_s)


async def load_prediction(settings: Settings, prediction_id: str) -> Prediction:
    """The prediction as it is now (one read on the async pool; rows are never deleted)."""
    async with read_sessions(settings)() as session:
        prediction: Prediction | None = await run_read(session, Session.get, Prediction, prediction_id)
        assert prediction is not None, prediction_id
        return prediction


async def load_public(settings: Settings, storage: Storage, prediction_id: str) -> dict[str, Any]:
    """The prediction's public body as it is now, with its queue standing while queued."""

    def present(session: Session) -> dict[str, Any]:
        prediction = session.get(Prediction, prediction_id)
        assert prediction is not None, prediction_id
        standing = standing_if_queued(session, prediction)
        return prediction_public(prediction, storage=storage, public_url=settings.public_url, standing=standing)

    async with read_sessions(settings)() as session:
        return await run_read(session, present)


async def prefer_wait_response(settings: Settings, storage: Storage, prediction_id: str, wait_s: int) -> JSONResponse:
    """Replicate's blocking answer: 201 with the final prediction, or 202 at the deadline.

    An unfinished prediction is reported ``starting`` (as Replicate's blocking API does): its
    clients go on polling only for that status.
    """
    await wait_until_terminal(settings, prediction_id, wait_s - ANSWER_MARGIN_S)
    content = await load_public(settings, storage, prediction_id)
    finished = Status(content["status"]).is_terminal()
    if not finished:
        content["status"] = Status.STARTING.value
    headers = {"Preference-Applied": f"wait={wait_s}", "Location": content["urls"]["get"]}
    return JSONResponse(status_code=201 if finished else 202, content=content, headers=headers)


class DeferredResponse(Response):
    """A response produced when it is sent: after the request's transaction committed and its
    database session closed, so producing it may wait without holding either."""

    def __init__(self, produce: Callable[[], Awaitable[Response]]) -> None:
        super().__init__()
        self.produce = produce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.produce()
        await response(scope, receive, send)
