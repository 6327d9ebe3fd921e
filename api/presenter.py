"""The prediction object as every client sees it (Replicate's shape plus farm extras)."""

from datetime import UTC, datetime
from typing import Any

from models.status import Status
from models.storage import Storage
from models.tables import Prediction


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with microseconds and ``Z``, as Replicate writes timestamps."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 6)


def prediction_public(prediction: Prediction, *, storage: Storage, public_url: str) -> dict[str, Any]:
    """The JSON body of a prediction for its owner."""
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
        "cost_usd": prediction.cost_usd,
        "price_usd": prediction.price_usd,
    }
    return {
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
    }
