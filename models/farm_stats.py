"""The farm's operating figures, read from Postgres (the truth) for ``/metrics``.

Two kinds of figures, so that every gateway process reports the same numbers and a scrape stays cheap:

- Live: queued and running predictions, oldest queued age, leases and heartbeats of busy workers. Read
  on every scrape through the partial index ``ix_predictions_unfinished`` (only unfinished rows).

A worker that dies mid-run stops renewing its lease; the relay's reaper then requeues the prediction
within a poll interval, and the next claim raises ``attempt``. So a lost run is counted from attempts:
every claim ends in a worker's finalize (which records the run's GPU time) or in the reaper.
- Finished: counters and latency histograms over every prediction that ever ended, and webhook attempts
  by outcome. Finished rows do not change, so each process folds rows completed more than ``SETTLE``
  ago into running totals once, and on each scrape reads only the rows after that watermark, through
  ``ix_predictions_completed`` and ``ix_webhook_attempts_attempted_at``. The first scrape of a process
  reads the whole history once. Totals are all-time, so they are true Prometheus counters (``rate()``
  works); rows deleted from the tables stay counted by processes that had already folded them in.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from threading import Lock
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, case, func, select
from sqlalchemy.orm import Session

from models.catalog import MODELS
from models.status import TERMINAL, Status
from models.tables import Prediction, WebhookAttempt

# Upper bounds (seconds) of every latency histogram: sub-second overhead up to an hour in the queue.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Longer than any finalize transaction and any clock skew between workers and Postgres: a row committed
# with a completed_at older than this would be missed by processes whose watermark passed it.
SETTLE = timedelta(minutes=10)
# Workers not seen for this long drop out of the per-worker series (a restarted worker has a new name).
WORKER_WINDOW = timedelta(days=1)


@dataclass
class Histogram:
    """Cumulative counts per ``LATENCY_BUCKETS`` bound, the count (the +Inf bucket) and the sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    total: float = 0.0

    def add(self, other: "Histogram") -> None:
        self.buckets = [mine + theirs for mine, theirs in zip(self.buckets, other.buckets, strict=True)]
        self.count += other.count
        self.total += other.total


@dataclass
class FinishedFigures:
    """Ended predictions of one (model, status, gpu_class)."""

    count: int = 0
    images: int = 0
    lost_runs: int = 0  # claims whose worker never finalized them (died, hung): the reaper took them back
    gpu_seconds: float = 0.0
    cost_usd: float = 0.0
    price_usd: float = 0.0
    queue_wait: Histogram = field(default_factory=Histogram)  # created → first claim, runs that started
    predict_time: Histogram = field(default_factory=Histogram)  # the pipeline's run time
    end_to_end: Histogram = field(default_factory=Histogram)  # created → completed, succeeded runs

    def add(self, other: "FinishedFigures") -> None:
        self.count += other.count
        self.images += other.images
        self.lost_runs += other.lost_runs
        self.gpu_seconds += other.gpu_seconds
        self.cost_usd += other.cost_usd
        self.price_usd += other.price_usd
        self.queue_wait.add(other.queue_wait)
        self.predict_time.add(other.predict_time)
        self.end_to_end.add(other.end_to_end)


GroupKey = tuple[str, str, str]  # model, status, gpu_class ("" when it never ran)
WorkerKey = tuple[str, str]  # worker name, model it ran


@dataclass
class FinishedTotals:
    groups: dict[GroupKey, FinishedFigures] = field(default_factory=dict)
    worker_last_finish: dict[WorkerKey, datetime] = field(default_factory=dict)
    webhook_attempts: dict[str, int] = field(default_factory=dict)  # by outcome

    def plus(self, other: "FinishedTotals") -> "FinishedTotals":
        """A new total of both (neither is changed)."""
        merged = FinishedTotals(webhook_attempts=dict(self.webhook_attempts))
        for source in (self, other):
            for key, figures in source.groups.items():
                merged.groups.setdefault(key, FinishedFigures()).add(figures)
        for worker, moment in [*self.worker_last_finish.items(), *other.worker_last_finish.items()]:
            seen = merged.worker_last_finish.get(worker)
            merged.worker_last_finish[worker] = moment if seen is None else max(seen, moment)
        for outcome, count in other.webhook_attempts.items():
            merged.webhook_attempts[outcome] = merged.webhook_attempts.get(outcome, 0) + count
        return merged

    def forget_workers_before(self, moment: datetime) -> None:
        self.worker_last_finish = {name: at for name, at in self.worker_last_finish.items() if at >= moment}


def seconds(interval: Any) -> ColumnElement[float]:
    return func.extract("epoch", interval).cast(Float)


def histogram_columns(value: Any, counted: ColumnElement[bool]) -> list[Any]:
    """Cumulative bucket counts, count and sum of ``value`` over the rows where ``counted`` holds."""
    columns: list[Any] = [func.count().filter(and_(counted, value <= bound)) for bound in LATENCY_BUCKETS]
    return [*columns, func.count().filter(counted), func.coalesce(func.sum(value).filter(counted), 0.0)]


def histogram_from(values: Iterable[Any]) -> Histogram:
    *buckets, count, total = values
    return Histogram(buckets=[int(b) for b in buckets], count=int(count), total=float(total))


def in_range(column: Any, since: datetime | None, before: datetime | None) -> list[ColumnElement[bool]]:
    conditions = [column.is_not(None)]
    if since is not None:
        conditions.append(column >= since)
    if before is not None:
        conditions.append(column < before)
    return conditions


def finished_between(session: Session, since: datetime | None, before: datetime | None) -> FinishedTotals:
    """Totals of predictions completed, and webhook attempts made, in ``[since, before)`` (None: open)."""
    p = Prediction
    queue_wait = seconds(p.started_at - p.created_at)
    end_to_end = seconds(p.completed_at - p.created_at)
    gpu_class = func.coalesce(p.gpu_class, "")
    # A worker's finalize records the GPU time; the reaper does not. Every other claim was lost.
    finalized_by_worker = p.gpu_seconds.is_not(None)
    lost_runs = p.attempt - case((finalized_by_worker, 1), else_=0)
    histograms = (
        histogram_columns(queue_wait, p.started_at.is_not(None))
        + histogram_columns(p.predict_time, p.predict_time.is_not(None))
        + histogram_columns(end_to_end, p.status == Status.SUCCEEDED)
    )
    width = len(LATENCY_BUCKETS) + 2
    rows = session.execute(
        select(
            p.model,
            p.status,
            gpu_class,
            func.count(),
            func.coalesce(func.sum(func.jsonb_array_length(p.output_keys)), 0),
            func.coalesce(func.sum(lost_runs), 0),
            func.coalesce(func.sum(p.gpu_seconds), 0.0),
            func.coalesce(func.sum(p.cost_usd), 0.0),
            func.coalesce(func.sum(p.price_usd), 0.0),
            *histograms,
        )
        .where(p.status.in_(TERMINAL), *in_range(p.completed_at, since, before))
        .group_by(p.model, p.status, gpu_class)
    ).all()
    totals = FinishedTotals()
    for model, status, gpu, count, images, lost, gpu_seconds, cost, price, *rest in rows:
        totals.groups[(model, str(status), gpu)] = FinishedFigures(
            count=count,
            images=int(images),
            lost_runs=int(lost),
            gpu_seconds=float(gpu_seconds),
            cost_usd=float(cost),
            price_usd=float(price),
            queue_wait=histogram_from(rest[:width]),
            predict_time=histogram_from(rest[width : 2 * width]),
            end_to_end=histogram_from(rest[2 * width :]),
        )
    workers = session.execute(
        select(p.worker, p.model, func.max(p.completed_at))
        .where(p.worker.is_not(None), finalized_by_worker, *in_range(p.completed_at, since, before))
        .group_by(p.worker, p.model)
    ).all()
    totals.worker_last_finish = {
        (str(worker), model): moment for worker, model, moment in workers if moment is not None
    }
    attempts = session.execute(
        select(WebhookAttempt.outcome, func.count())
        .where(*in_range(WebhookAttempt.attempted_at, since, before))
        .group_by(WebhookAttempt.outcome)
    ).all()
    totals.webhook_attempts = {str(outcome): int(count) for outcome, count in attempts}
    return totals


class FinishedTotalsCache:
    """One process's running totals of rows finished before its watermark (``SETTLE`` behind now)."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._watermark: datetime | None = None
        self._settled = FinishedTotals()

    def read(self, session: Session, now: datetime) -> FinishedTotals:
        """All-time totals as of ``now`` (the database's clock)."""
        mark = now - SETTLE
        with self._lock:  # concurrent scrapes fold each settled row in once
            if self._watermark is None or mark > self._watermark:
                self._settled = self._settled.plus(finished_between(session, self._watermark, mark))
                self._settled.forget_workers_before(now - WORKER_WINDOW)
                self._watermark = mark
            settled, watermark = self._settled, self._watermark
        return settled.plus(finished_between(session, watermark, None))


@dataclass
class ModelLive:
    queued: int = 0
    oldest_queued_at: datetime | None = None
    processing: int = 0
    lease_expired: int = 0  # running predictions whose worker stopped renewing the lease (not reaped yet)
    lost_runs: int = 0  # claims of unfinished predictions that their worker never finalized


@dataclass
class WorkerLive:
    lease_expires_at: datetime  # the latest lease among its running predictions
    last_heartbeat_at: datetime  # when it last claimed or renewed (lease_expires_at − lease length)


@dataclass
class FarmStats:
    now: datetime
    models: dict[str, ModelLive]
    busy_workers: dict[WorkerKey, WorkerLive]
    finished: FinishedTotals

    def worker_last_seen(self) -> dict[WorkerKey, datetime]:
        """Each worker's latest claim, heartbeat or finish within ``WORKER_WINDOW``."""
        recent = self.now - WORKER_WINDOW
        seen = {key: at for key, at in self.finished.worker_last_finish.items() if at >= recent}
        for key, live in self.busy_workers.items():
            seen[key] = max(seen.get(key, live.last_heartbeat_at), live.last_heartbeat_at)
        return seen


def live_models(session: Session, now: datetime) -> dict[str, ModelLive]:
    p = Prediction
    rows = session.execute(
        select(
            p.status,
            p.model,
            func.count(),
            func.min(p.created_at),
            func.count().filter(p.lease_expires_at < now),
            func.coalesce(func.sum(p.attempt), 0),
        )
        .where(p.status.in_((Status.STARTING, Status.PROCESSING)))
        .group_by(p.status, p.model)
    ).all()
    models = {ref: ModelLive() for ref in MODELS}  # every served model, so its series exist at 0
    for status, model, count, oldest, expired, attempts in rows:
        live = models.setdefault(model, ModelLive())
        if status == Status.STARTING:  # queued again after a lost run: every claim so far was lost
            live.queued, live.oldest_queued_at = count, oldest
            live.lost_runs += int(attempts)
        else:  # the current claim is still running
            live.processing, live.lease_expired = count, expired
            live.lost_runs += int(attempts) - count
    return models


def busy_workers(session: Session, lease_seconds: float) -> dict[WorkerKey, WorkerLive]:
    p = Prediction
    rows = session.execute(
        select(p.worker, p.model, func.max(p.lease_expires_at))
        .where(p.status == Status.PROCESSING, p.worker.is_not(None), p.lease_expires_at.is_not(None))
        .group_by(p.worker, p.model)
    ).all()
    lease = timedelta(seconds=lease_seconds)
    return {
        (str(worker), model): WorkerLive(expires, expires - lease)
        for worker, model, expires in rows
        if expires is not None
    }


def farm_stats(session: Session, cache: FinishedTotalsCache, *, lease_seconds: float) -> FarmStats:
    """Everything ``/metrics`` reports, as of the database's clock. ``lease_seconds`` is the workers' lease
    length (FARM_LEASE_SECONDS, the same setting on every process)."""
    now = session.scalar(select(func.now()))
    assert now is not None
    return FarmStats(
        now=now,
        models=live_models(session, now),
        busy_workers=busy_workers(session, lease_seconds),
        finished=cache.read(session, now),
    )
