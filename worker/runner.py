"""One prediction on this worker: claim → predict → encode and upload → finalize.

Each step that changes the row is a compare-and-set on (status, attempt): when another execution
owns the prediction, this one changes nothing and its files (under its own attempt's keys) are
never referenced.
"""

import io
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image
from sqlalchemy.orm import Session

from models import lifecycle
from models.catalog import find_model
from models.cost import RunCost
from models.db import session_scope
from models.inputs import RenderRequest
from models.settings import Settings
from models.status import Status
from models.storage import CONTENT_TYPES, Storage, output_key
from models.tables import Prediction
from worker.db_retry import CONNECTION_ERRORS, DatabaseUnavailable, first_line, retrying
from worker.encode import encode_images
from worker.pipelines import Predictor
from worker.progress import ProgressLog

if TYPE_CHECKING:  # worker.safety imports torch, which the Celery parent process never loads
    from worker.safety import SafetyChecker

log = logging.getLogger("farm.worker")


# Without a checker the prediction says so (has_nsfw_concepts null) instead of claiming outputs are safe.
NO_SAFETY_CHECKER = (
    "Safety checker: none configured on this worker; outputs were not checked (has_nsfw_concepts: null)."
)
SAFETY_CHECKER_DISABLED = "Safety checker: disabled by the request."


class CancelRequested(Exception):
    """The customer canceled the running prediction; raised at a step boundary."""


class ClaimLost(Exception):
    """Another execution owns the prediction now (lease expired and reclaimed)."""


def worker_name(settings: Settings, pid: int | None = None) -> str:
    """The name claims record: of this process, or of the pool child ``pid`` (the parent names a killed child)."""
    return settings.worker_name or f"{socket.gethostname()}:{pid or os.getpid()}"


# What a prediction stopped by the soft time limit says.
SOFT_TIME_LIMIT_ERROR = "Prediction took longer than {seconds:g} s, the worker's time limit, and was stopped."


def run_prediction(
    prediction_id: str,
    *,
    settings: Settings,
    predictor: Predictor,
    storage: Storage,
    safety_checker: "SafetyChecker | None" = None,
) -> Status | None:
    """Run the prediction if it can be claimed; return the terminal status this run recorded. With a
    `safety_checker`, outputs are checked after denoising unless the input disables it."""
    started = time.perf_counter()
    db = settings.database_url

    # 1. Claim the next attempt (0 rows: finished, canceled, owned elsewhere, or out of attempts).
    def take(session: Session) -> tuple[lifecycle.Claim | None, Prediction | None]:
        claim = lifecycle.claim(
            session,
            prediction_id=prediction_id,
            worker=worker_name(settings),
            lease_seconds=settings.lease_seconds,
        )
        return claim, claim.row if claim else None

    try:
        claim, prediction = retrying(db, f"claim {prediction_id}", take)
    except DatabaseUnavailable:
        # Still starting (the reconciler publishes it again), or claimed by a lost commit (the reaper requeues it).
        log.exception("prediction %s: cannot claim it; dropping this delivery", prediction_id)
        return None
    if claim is None or prediction is None:
        log.info("prediction %s not claimable; skipping this delivery", prediction_id)
        return None

    progress = ProgressLog()
    predict_time: float | None = None
    try:
        # 2. Resolve the stored input (validated at the gateway) into a render request; an init image
        # was stored by the gateway (workers never fetch customer URLs).
        spec = find_model(prediction.model)
        if spec is None:
            raise RuntimeError(f"model {prediction.model!r} is not in this worker's catalog")
        inputs = spec.input_cls.model_validate(prediction.input)
        init_image = None
        if prediction.image_key is not None:
            init_image = Image.open(io.BytesIO(storage.get(prediction.image_key))).convert("RGB")
        elif getattr(inputs, "image", None) is not None:
            raise RuntimeError("input.image was given but the gateway stored no init image for it")
        request = RenderRequest.from_input(
            inputs,  # type: ignore[arg-type]
            prediction.seed,
            init_image_key=prediction.image_key,
            init_image_size=None if init_image is None else init_image.size,
        )
        # A model without the input is checked whenever a checker is loaded.
        wants_check = getattr(inputs, "enable_safety_checker", True)
        checker = safety_checker if wants_check else None
        if not wants_check:
            progress.note(SAFETY_CHECKER_DISABLED)
        elif safety_checker is None:
            progress.note(NO_SAFETY_CHECKER)

        # 3. Denoise, renewing the lease and watching for cancel at step boundaries.
        last_beat = time.perf_counter()  # the claim just set the lease

        def on_step(step: int, total: int) -> None:
            nonlocal last_beat
            progress.step(step, total)
            now = time.perf_counter()
            # Steps can be milliseconds apart: reach Postgres at most every heartbeat_seconds.
            if now - last_beat < settings.heartbeat_seconds:
                return
            last_beat = now
            try:
                with session_scope(db) as beat:
                    canceled = lifecycle.heartbeat(
                        beat, claim, lease_seconds=settings.lease_seconds, logs=progress.text(), step=step, total=total
                    )
            except CONNECTION_ERRORS as error:
                # Postgres away: keep denoising. A later beat renews the lease unless the reaper took the
                # prediction meanwhile (then that beat, or the finalize, finds the claim lost).
                log.warning(
                    "prediction %s: heartbeat skipped, database unreachable (%s)", prediction_id, first_line(error)
                )
                return
            if canceled is None:
                raise ClaimLost(prediction_id)
            if canceled:
                raise CancelRequested(prediction_id)

        predict_started = time.perf_counter()
        images = (
            predictor.predict(request, on_step)
            if init_image is None
            else predictor.predict(request, on_step, init_image)
        )
        has_nsfw_concepts = None
        if checker is not None:  # part of the model's run, as in diffusers' pipelines: inside predict_time
            images, has_nsfw_concepts = checker.check(images)
            progress.note(_safety_note(has_nsfw_concepts))
        # Encoding the files is part of predict_time too, as in cog, whose predict() returns written files.
        encoded = encode_images(images, request.output_format, request.output_quality)
        predict_time = time.perf_counter() - predict_started

        # 4. Upload under this attempt's keys.
        keys = []
        for index, data in enumerate(encoded):
            key = output_key(prediction_id, claim.attempt, index, request.output_format)
            storage.put(key, data, CONTENT_TYPES[request.output_format])
            keys.append(key)

        # 5. Finalize with metrics and cost; the GPU was held from claim to here.
        gpu_seconds = time.perf_counter() - started
        charged = spec.pricing.price_usd(
            width=request.width, height=request.height, num_images=len(keys), gpu_seconds=gpu_seconds
        )
        cost = run_cost(settings, predictor, gpu_seconds, price_usd=charged)
        predict_seconds = round(predict_time, 6)
        won = _finalize(
            db,
            claim,
            lambda session: lifecycle.succeed(
                session,
                claim,
                output_keys=keys,
                predict_time=predict_seconds,
                cost=cost,
                logs=progress.text(),
                has_nsfw_concepts=has_nsfw_concepts,
                progress=progress.last,
            ),
        )
        return Status.SUCCEEDED if won else None
    except CancelRequested:
        cost = run_cost(settings, predictor, time.perf_counter() - started)
        canceled = _finalize(
            db,
            claim,
            lambda session: lifecycle.cancel_running(
                session, claim, predict_time=predict_time, logs=progress.text(), cost=cost
            ),
        )
        log.info("prediction %s canceled", prediction_id)
        return Status.CANCELED if canceled else None
    except ClaimLost:
        log.warning("prediction %s: claim of attempt %d lost; discarding this run", prediction_id, claim.attempt)
        return None
    except SoftTimeLimitExceeded:
        cost = run_cost(settings, predictor, time.perf_counter() - started)
        error = SOFT_TIME_LIMIT_ERROR.format(seconds=settings.task_soft_time_limit_seconds)
        return _fail(db, claim, error, predict_time, progress, cost)
    except Exception as error:  # any failure inside the farm ends the prediction, not the worker
        log.error("prediction %s failed:\n%s", prediction_id, traceback.format_exc())
        cost = run_cost(settings, predictor, time.perf_counter() - started)
        return _fail(db, claim, f"{error.__class__.__name__}: {error}", predict_time, progress, cost)


def run_cost(settings: Settings, predictor: Predictor, gpu_seconds: float, *, price_usd: float = 0.0) -> RunCost:
    """The run's GPU time at this worker's price; failed and canceled runs are not charged (price 0)."""
    return RunCost.of_run(
        gpu_seconds=gpu_seconds,
        gpu_class=settings.gpu_class or predictor.gpu_class,
        gpu_hourly_usd=settings.gpu_hourly_usd,
        price_usd=price_usd,
    )


def _safety_note(has_nsfw_concepts: list[bool]) -> str:
    flagged = [str(index) for index, flag in enumerate(has_nsfw_concepts) if flag]
    if not flagged:
        return f"Safety checker: {len(has_nsfw_concepts)} image(s) checked, none flagged."
    return (
        f"Safety checker: {len(flagged)} of {len(has_nsfw_concepts)} image(s) flagged (output "
        f"{', '.join(flagged)}) and replaced by black images."
    )


def _fail(
    db: str, claim: lifecycle.Claim, error: str, predict_time: float | None, progress: ProgressLog, cost: RunCost
) -> Status | None:
    failed = _finalize(
        db,
        claim,
        lambda session: lifecycle.fail(
            session, claim, error=error, predict_time=predict_time, logs=progress.text(), cost=cost
        ),
    )
    return Status.FAILED if failed else None


def _finalize(db: str, claim: lifecycle.Claim, finish: Callable[[Session], bool]) -> bool:
    """Run a finishing compare-and-set, riding out a short Postgres outage; False when the claim was lost or
    Postgres stayed away (then the lease runs out and the reaper requeues or fails the prediction)."""
    try:
        return retrying(db, f"finish {claim.prediction_id} attempt {claim.attempt}", finish)
    except DatabaseUnavailable:
        log.exception("prediction %s: cannot record the end of attempt %d", claim.prediction_id, claim.attempt)
        return False
