"""Drives fal's own client against the farm and prints what it saw as JSON (run in a subprocess:
fal_client reads FAL_RUN_HOST / FAL_QUEUE_RUN_HOST when it is imported).

Usage: python tests/e2e/fal_session.py SCENARIO, with FAL_KEY, FAL_RUN_HOST, FAL_QUEUE_RUN_HOST
and SSL_CERT_FILE set.
"""

import json
import sys
import time
from dataclasses import asdict
from typing import Any

import fal_client

APP = "fal-ai/stable-diffusion-v35-medium"
SMALL = {"prompt": "a red fox", "image_size": {"width": 256, "height": 256}, "num_inference_steps": 4}
LONG = {
    "prompt": "a slow one",
    "image_size": {"width": 1536, "height": 1536},
    "num_inference_steps": 50,
    "num_images": 4,
}
POLL_S = 0.05
TIMEOUT_S = 120


def status_record(status: fal_client.Status) -> dict[str, Any]:
    return {"type": type(status).__name__, **asdict(status)}


def until(handle: fal_client.SyncRequestHandle, kind: type, *, with_logs: bool, need_logs: bool = False) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        status = handle.status(with_logs=with_logs)
        if isinstance(status, kind) and (not need_logs or getattr(status, "logs", None)):
            return status
        time.sleep(POLL_S)
    raise TimeoutError(f"{handle.request_id} never reached {kind.__name__}")


def queue() -> dict[str, Any]:
    """Submit a long job and a short one behind it; look at both; cancel the long one; fetch results."""
    seen: dict[str, Any] = {}
    long = fal_client.submit(APP, arguments=LONG)
    running = until(long, fal_client.InProgress, with_logs=True, need_logs=True)
    seen["running"] = status_record(running)
    seen["running_without_logs"] = status_record(long.status(with_logs=False))

    short = fal_client.submit(APP, arguments=SMALL)
    seen["queued"] = status_record(short.status(with_logs=True))
    # The module-level calls rebuild the URLs from the app id: https://{QUEUE_HOST}/{owner}/{app}/requests/{id}/…
    seen["queued_by_id"] = status_record(fal_client.status(APP, short.request_id, with_logs=True))

    long.cancel()
    seen["short_result"] = short.get()
    seen["short_by_id"] = fal_client.result(APP, short.request_id)
    seen["short_completed"] = status_record(short.status(with_logs=True))
    seen["long_completed"] = status_record(until(long, fal_client.Completed, with_logs=False))
    try:
        fal_client.cancel(APP, long.request_id)
    except fal_client.FalClientHTTPError as error:
        seen["cancel_again"] = {"status_code": error.status_code, "body": error.response.json()}
    return seen


def subscribe() -> dict[str, Any]:
    """subscribe(): submit, follow status updates with logs, fetch the result; fal's defaults apply."""
    updates: list[dict[str, Any]] = []
    enqueued: list[str] = []
    result = fal_client.subscribe(
        APP,
        arguments={"prompt": "a lighthouse", "num_inference_steps": 3, "sync_mode": True},
        with_logs=True,
        on_enqueue=enqueued.append,
        on_queue_update=lambda status: updates.append(status_record(status)),
    )
    return {"result": result, "updates": updates, "enqueued": enqueued}


def run() -> dict[str, Any]:
    """run(): one POST to FAL_RUN_HOST answered with the result."""
    started = time.monotonic()
    result = fal_client.run(APP, arguments={**SMALL, "output_format": "png", "seed": 11})
    return {"result": result, "seconds": time.monotonic() - started}


def errors() -> dict[str, Any]:
    """Bad input and a wrong key, as fal's client reports them."""
    seen: dict[str, Any] = {}
    try:
        fal_client.submit(APP, arguments={"prompt": "x", "num_inference_steps": 500})
    except fal_client.FalClientHTTPError as error:
        seen["bad_input"] = {"status_code": error.status_code, "detail": error.message}
    try:
        fal_client.SyncClient(key="not-a-farm-key").submit(APP, arguments=SMALL)
    except fal_client.FalClientHTTPError as error:
        seen["wrong_key"] = {"status_code": error.status_code, "detail": error.message}
    try:
        fal_client.status(APP, "no-such-request")
    except fal_client.FalClientHTTPError as error:
        seen["unknown_request"] = {"status_code": error.status_code, "detail": error.message}
    return seen


SCENARIOS = {"queue": queue, "subscribe": subscribe, "run": run, "errors": errors}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()))  # noqa: T201
