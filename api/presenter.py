"""The prediction and file objects as every client sees them (Replicate's shapes plus farm extras)."""

from datetime import UTC, datetime
from typing import Any

from models.queue_eta import QueueStanding
from models.status import Status
from models.storage import Storage
from models.tables import File, Prediction


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with microseconds and ``Z``, as Replicate writes timestamps."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 6)


def progress_public(prediction: Prediction) -> dict[str, Any] | None:
    """``{step, total, percent}`` of the denoising loop, once the worker reported a step."""
    if not prediction.progress_total:
        return None
    step, total = prediction.progress_step or 0, prediction.progress_total
    return {"step": step, "total": total, "percent": round(100 * step / total, 1)}


def prediction_public(
    prediction: Prediction, *, storage: Storage, public_url: str, standing: QueueStanding | None = None
) -> dict[str, Any]:
    """The JSON body of a prediction for its owner; ``standing`` adds queue_position and eta_seconds."""
    base = f"{public_url.rstrip('/')}/v1/predictions/{prediction.id}"
    status = Status(prediction.status)
    output = None
    if status is Status.SUCCEEDED and prediction.output_keys:
        output = [storage.url(key) for key in prediction.output_keys]
    metrics = {
        "predict_time": prediction.predict_time,
        "total_time": seconds_between(prediction.created_at, prediction.completed_at),
        "queue_time": seconds_between(prediction.created_at, prediction.started_at),
        "gpu_seconds": prediction.gpu_seconds,
        "gpu_hourly_usd": prediction.gpu_hourly_usd,
        "cost_usd": prediction.cost_usd,
        "price_usd": prediction.price_usd,
    }
    body: dict[str, Any] = {
        "id": prediction.id,
        "model": prediction.model,
        "version": prediction.version,
        "input": prediction.input,
        "output": output,
        "error": prediction.error,
        "logs": prediction.logs,
        "status": status.value,
        "source": "api",
        "data_removed": False,
        "created_at": iso(prediction.created_at),
        "started_at": iso(prediction.started_at),
        "completed_at": iso(prediction.completed_at),
        "urls": {"get": base, "cancel": f"{base}/cancel", "stream": f"{base}/stream"},
        "metrics": {name: value for name, value in metrics.items() if value is not None},
        "seed": prediction.seed,
        "gpu_class": prediction.gpu_class,
        "has_nsfw_concepts": prediction.has_nsfw_concepts,
    }
    if prediction.deadline is not None:
        body["deadline"] = iso(prediction.deadline)
    if (progress := progress_public(prediction)) is not None:
        body["progress"] = progress
    if standing is not None and status is Status.STARTING:
        body["queue_position"] = standing.position
        body["eta_seconds"] = standing.eta_seconds
    return body


def file_url(public_url: str, file_id: str) -> str:
    """A file's ``urls.get``; passed as a model input (``image``) it names the stored file."""
    return f"{public_url.rstrip('/')}/v1/files/{file_id}"


def file_public(file: File, *, public_url: str) -> dict[str, Any]:
    """Replicate's file object."""
    return {
        "id": file.id,
        "name": file.name,
        "content_type": file.content_type,
        "size": file.size,
        "etag": file.sha256,
        "checksums": {"sha256": file.sha256},
        "metadata": file.file_metadata,
        "created_at": iso(file.created_at),
        "expires_at": iso(file.expires_at),
        "urls": {"get": file_url(public_url, file.id)},
    }
