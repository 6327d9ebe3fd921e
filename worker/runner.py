"""One prediction on this worker: claim → predict → encode and upload → finalize. With batching on
(FARM_BATCH_MAX_IMAGES above 1) a text-to-image run also claims compatible queued predictions and denoises them in
the same pipeline call; each is then finished, canceled or failed on its own.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image
from pydantic import ValidationError
from sqlalchemy.orm import Session

from models import lifecycle
from models.catalog import ModelSpec, find_model
from models.cost import RunCost
from models.db import session_scope
from models.inputs import RenderRequest
from models.settings import Settings
from models.status import Status
from models.storage import CONTENT_TYPES, Storage, output_key
from worker.db_retry import CONNECTION_ERRORS, PRE_PING, DatabaseUnavailable, first_line, retrying
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


def worker_name(settings: Settings, pid: int | None = None) -> str:
    """The name claims record: of this process, or of the pool child ``pid`` (the parent names a killed child)."""
    return settings.worker_name or f"{socket.gethostname()}:{pid or os.getpid()}"


# What each job of a batch says in its logs: its predict_time covers the whole call.
BATCHED = "Batched: denoised in one pipeline call with {others} other queued job(s) of the same size and steps."
# What a prediction stopped by the soft time limit says.
SOFT_TIME_LIMIT_ERROR = "Prediction took longer than {seconds:g} s, the worker's time limit, and was stopped."


@dataclass(eq=False)
class Job:
    """One claimed prediction of this run, resolved into what the pipeline call needs."""

    claim: lifecycle.Claim
    spec: ModelSpec
    request: RenderRequest
    init_image: Image.Image | None
    checker: "SafetyChecker | None"
    progress: ProgressLog
    predict_time: float | None = None  # set once its images are checked and encoded

    @property
    def prediction_id(self) -> str:
        return self.claim.prediction_id


class RunStopped(Exception):
    """Every job of the run was canceled or lost; raised at a step boundary to stop the pipeline."""


def run_prediction(
    prediction_id: str,
    *,
    settings: Settings,
    predictor: Predictor,
    storage: Storage,
    safety_checker: "SafetyChecker | None" = None,
) -> Status | None:
    """Run the prediction if it can be claimed, with compatible queued ones when batching is on
    (`Settings.batch_max_images`); return the terminal status this run recorded for it. With a
    `safety_checker`, outputs are checked after denoising unless the input disables it."""
    started = time.perf_counter()
    db = settings.database_url

    # 1. Claim the next attempt (0 rows: finished, canceled, owned elsewhere, or out of attempts).
    def take(session: Session) -> tuple[lifecycle.Claim | None, lifecycle.ClaimedRow | None]:
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

    batch: list[Job] = []  # the jobs of the pipeline call, in its order
    live: list[Job] = []  # those claimed and not yet finished by this run
    recorded: dict[str, Status | None] = {}  # the terminal status each finished one got

    def share(job: Job) -> float:
        """The job's part of the GPU time held since the claim, by its images in the pipeline call."""
        images = sum(len(other.request.seeds) for other in batch)
        return (time.perf_counter() - started) * len(job.request.seeds) / images

    try:
        # 2. Resolve the stored input into a render request.
        lead = resolve_job(claim, prediction, storage, safety_checker)
        batch.append(lead)
        live.append(lead)

        # 3. Batch: claim queued jobs that can share the lead's pipeline call.
        companions = take_companions(settings, lead, storage, safety_checker)
        batch += companions
        live += companions

        # 4. Denoise, renewing the leases and watching for cancel at step boundaries.
        last_beat = time.perf_counter()  # the claim just set the lease

        def on_step(step: int, total: int) -> None:
            nonlocal last_beat
            for job in live:
                job.progress.step(step, total)
            now = time.perf_counter()
            # Steps can be milliseconds apart: reach Postgres at most every heartbeat_seconds.
            if now - last_beat < settings.heartbeat_seconds:
                return
            last_beat = now
            try:
                one_statement_each = all(lifecycle.writes_one_statement(job.claim) for job in live)
                with session_scope(db, pre_ping=PRE_PING, autocommit=one_statement_each) as beat:
                    answers = [
                        lifecycle.heartbeat(
                            beat,
                            job.claim,
                            lease_seconds=settings.lease_seconds,
                            logs=job.progress.text(),
                            step=step,
                            total=total,
                        )
                        for job in live
                    ]
            except CONNECTION_ERRORS as error:
                # Postgres away: keep denoising. A later beat renews the leases unless the reaper took the
                # predictions meanwhile (then that beat, or the finalize, finds the claims lost).
                log.warning(
                    "prediction %s: heartbeat skipped, database unreachable (%s)", _ids(live), first_line(error)
                )
                return
            for job, stop in list(zip(live, answers, strict=True)):
                if stop is None:
                    log.warning(
                        "prediction %s: claim of attempt %d lost; discarding this run",
                        job.prediction_id,
                        job.claim.attempt,
                    )
                    live.remove(job)
                elif stop:
                    live.remove(job)
                    recorded[job.prediction_id] = _cancel(db, job, run_cost(settings, predictor, share(job)))
            if not live:
                raise RunStopped

        predict_started = time.perf_counter()
        if len(batch) == 1:
            rendered = [
                predictor.predict(lead.request, on_step)
                if lead.init_image is None
                else predictor.predict(lead.request, on_step, lead.init_image)
            ]
        else:
            rendered = predictor.predict_batch([job.request for job in batch], on_step)

        for job, images in zip(batch, rendered, strict=True):
            if job in live:  # not canceled or lost during the run
                recorded[job.prediction_id] = _deliver(
                    settings, predictor, storage, job, images, predict_started, share
                )
                live.remove(job)
    except RunStopped:
        pass
    except Exception as error:  # any failure inside the farm ends the predictions, not the worker
        if isinstance(error, SoftTimeLimitExceeded):
            message = SOFT_TIME_LIMIT_ERROR.format(seconds=settings.task_soft_time_limit_seconds)
        else:
            log.error("prediction %s failed:\n%s", _ids(live) or prediction_id, traceback.format_exc())
            message = f"{error.__class__.__name__}: {error}"
        if not batch:  # the lead's input could not be resolved
            return _fail(db, claim, message, None, run_cost(settings, predictor, time.perf_counter() - started))
        for job in live:
            recorded[job.prediction_id] = _fail(db, job.claim, message, job, run_cost(settings, predictor, share(job)))
    return recorded.get(prediction_id)


def resolve_job(
    claim: lifecycle.Claim, prediction: lifecycle.ClaimedRow, storage: Storage, safety_checker: "SafetyChecker | None"
) -> Job:
    """The stored input (validated at the gateway) as a render request; an init image was stored by the gateway
    (workers never fetch customer URLs)."""
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
    progress = ProgressLog()
    wants_check = getattr(inputs, "enable_safety_checker", True)
    if not wants_check:
        progress.note(SAFETY_CHECKER_DISABLED)
    elif safety_checker is None:
        progress.note(NO_SAFETY_CHECKER)
    return Job(claim, spec, request, init_image, safety_checker if wants_check else None, progress)


def take_companions(
    settings: Settings, lead: Job, storage: Storage, safety_checker: "SafetyChecker | None"
) -> list[Job]:
    """Queued jobs that fit the lead's pipeline call, within `settings.batch_max_images`. One whose input cannot
    be resolved fails on its own; none are taken when Postgres is away (their own deliveries run them)."""
    shape = lead.request.batch_shape()
    room = settings.batch_max_images // len(lead.request.seeds) - 1
    if shape is None or room < 1:
        return []

    def fits(inputs: dict[str, Any], seed: int) -> bool:
        try:
            request = RenderRequest.from_input(lead.spec.input_cls.model_validate(inputs), seed)  # type: ignore[arg-type]
        except ValidationError:
            return False
        return request.batch_shape() == shape

    db = settings.database_url
    try:
        claims = retrying(
            db,
            f"batch with {lead.prediction_id}",
            lambda session: lifecycle.claim_companions(
                session,
                lead=lead.claim,
                worker=worker_name(settings),
                lease_seconds=settings.lease_seconds,
                limit=room,
                fits=fits,
            ),
        )
    except DatabaseUnavailable:
        log.exception("prediction %s: cannot look for jobs to batch with it; running it alone", lead.prediction_id)
        return []
    companions = []
    for claim in claims:
        assert claim.row is not None
        try:
            companions.append(resolve_job(claim, claim.row, storage, safety_checker))
        except Exception as error:
            log.error("prediction %s failed:\n%s", claim.prediction_id, traceback.format_exc())
            _fail(db, claim, f"{error.__class__.__name__}: {error}", None, cost=None)  # it held no GPU
    if companions:
        log.info("prediction %s: batched with %s", lead.prediction_id, _ids(companions))
        for job in [lead, *companions]:
            job.progress.note(BATCHED.format(others=len(companions)))
    return companions


def _deliver(
    settings: Settings,
    predictor: Predictor,
    storage: Storage,
    job: Job,
    images: list[Image.Image],
    predict_started: float,
    share: Callable[[Job], float],
) -> Status | None:
    """Check, encode, upload and finalize one job's images; its GPU time is its share of the run's."""
    request = job.request
    has_nsfw_concepts = None
    if job.checker is not None:  # part of the model's run, as in diffusers' pipelines: inside predict_time
        images, has_nsfw_concepts = job.checker.check(images)
        job.progress.note(_safety_note(has_nsfw_concepts))
    # Encoding the files is part of predict_time too, as in cog, whose predict() returns written files.
    encoded = encode_images(images, request.output_format, request.output_quality)
    predict_time = job.predict_time = round(time.perf_counter() - predict_started, 6)

    # 5. Upload under this attempt's keys.
    keys = []
    for index, data in enumerate(encoded):
        key = output_key(job.prediction_id, job.claim.attempt, index, request.output_format)
        storage.put(key, data, CONTENT_TYPES[request.output_format])
        keys.append(key)

    # 6. Finalize with metrics and cost; the GPU was held from claim to here.
    gpu_seconds = share(job)
    charged = job.spec.pricing.price_usd(
        width=request.width, height=request.height, num_images=len(keys), gpu_seconds=gpu_seconds
    )
    cost = run_cost(settings, predictor, gpu_seconds, price_usd=charged)
    won = _finalize(
        settings.database_url,
        job.claim,
        lambda session: lifecycle.succeed(
            session,
            job.claim,
            output_keys=keys,
            predict_time=predict_time,
            cost=cost,
            logs=job.progress.text(),
            has_nsfw_concepts=has_nsfw_concepts,
            progress=job.progress.last,
        ),
    )
    return Status.SUCCEEDED if won else None


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


def _fail(db: str, claim: lifecycle.Claim, error: str, job: Job | None, cost: RunCost | None) -> Status | None:
    """End the attempt failed; `job` is None when its input could not even be resolved."""
    predict_time, logs = (None, "") if job is None else (job.predict_time, job.progress.text())
    failed = _finalize(
        db,
        claim,
        lambda session: lifecycle.fail(session, claim, error=error, predict_time=predict_time, logs=logs, cost=cost),
    )
    return Status.FAILED if failed else None


def _cancel(db: str, job: Job, cost: RunCost) -> Status | None:
    canceled = _finalize(
        db,
        job.claim,
        lambda session: lifecycle.cancel_running(
            session, job.claim, predict_time=job.predict_time, logs=job.progress.text(), cost=cost
        ),
    )
    log.info("prediction %s canceled", job.prediction_id)
    return Status.CANCELED if canceled else None


def _ids(jobs: list[Job]) -> str:
    return ", ".join(job.prediction_id for job in jobs)


def _finalize(db: str, claim: lifecycle.Claim, finish: Callable[[Session], bool]) -> bool:
    """Run a finishing compare-and-set, riding out a short Postgres outage; False when the claim was lost or
    Postgres stayed away (then the lease runs out and the reaper requeues or fails the prediction)."""
    try:
        what = f"finish {claim.prediction_id} attempt {claim.attempt}"
        return retrying(db, what, finish, autocommit=lifecycle.writes_one_statement(claim))
    except DatabaseUnavailable:
        log.exception("prediction %s: cannot record the end of attempt %d", claim.prediction_id, claim.attempt)
        return False
