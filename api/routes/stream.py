"""Server-sent events of one prediction: status, progress, logs, output, then done."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentKey, SessionDep, SettingsDep, StorageDep, owned_prediction
from api.presenter import progress_public
from models.db import get_sessionmaker
from models.settings import Settings
from models.status import Status
from models.storage import Storage
from models.tables import Prediction

router = APIRouter(prefix="/v1", tags=["predictions"])

# How often the stream looks at the row; workers record progress at most twice a second.
POLL_INTERVAL_S = 0.2
# A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0


def event(name: str, data: str) -> str:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {name}\n{lines}\n"


def load(settings: Settings, prediction_id: str) -> Prediction:
    with get_sessionmaker(settings.database_url)() as session:
        prediction = session.get(Prediction, prediction_id)
        assert prediction is not None  # the route checked it exists; rows are never deleted
        return prediction


async def prediction_events(prediction_id: str, settings: Settings, storage: Storage) -> AsyncIterator[str]:
    """Events until the prediction is terminal. Each change is sent once."""
    sent_status, sent_progress, sent_log_lines = "", None, 0
    idle = 0.0
    while True:
        prediction = await run_in_threadpool(load, settings, prediction_id)
        status = Status(prediction.status)
        chunks = []
        if status != sent_status:
            sent_status = status
            chunks.append(event("status", status.value))
        progress = progress_public(prediction)
        if progress is not None and progress != sent_progress:
            sent_progress = progress
            chunks.append(event("progress", json.dumps(progress)))
        log_lines = prediction.logs.splitlines()
        chunks += [event("logs", line) for line in log_lines[sent_log_lines:]]
        sent_log_lines = len(log_lines)
        if status.is_terminal():
            yield "".join(chunks) + "".join(terminal_events(prediction, status, storage))
            return
        idle = 0.0 if chunks else idle + POLL_INTERVAL_S
        if idle >= KEEPALIVE_S:
            idle, chunks = 0.0, [": keep-alive\n\n"]
        if chunks:
            yield "".join(chunks)
        await asyncio.sleep(POLL_INTERVAL_S)


def terminal_events(prediction: Prediction, status: Status, storage: Storage) -> list[str]:
    """Replicate's ending: outputs, an error if any, then ``done`` (with a reason unless it succeeded)."""
    chunks = [event("output", storage.url(key)) for key in prediction.output_keys or []]
    done: dict[str, Any] = {}
    if status is Status.FAILED:
        chunks.append(event("error", prediction.error or "failed"))
        done = {"reason": "error"}
    elif status is Status.CANCELED:
        done = {"reason": "canceled"}
    chunks.append(event("done", json.dumps(done)))
    return chunks


@router.get("/predictions/{prediction_id}/stream", response_class=StreamingResponse)
def stream_prediction(
    prediction_id: str, session: SessionDep, key: CurrentKey, settings: SettingsDep, storage: StorageDep
) -> StreamingResponse:
    """Follow a prediction as server-sent events until it ends (``event: done``)."""
    owned_prediction(session, key, prediction_id)
    return StreamingResponse(
        prediction_events(prediction_id, settings, storage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
