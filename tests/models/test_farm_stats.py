"""The figures behind /metrics on real Postgres: a process's running totals (folded in once, then only the
rows after its watermark) always equal a fresh read of the whole history, so every gateway agrees."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.cost import RunCost
from models.db import session_scope
from models.farm_stats import LATENCY_BUCKETS, SETTLE, FinishedTotals, FinishedTotalsCache, farm_stats
from models.keys import find_active_key
from models.tables import Prediction

MODEL = SD35_MEDIUM.ref


def database_now(database_url: str) -> datetime:
    with session_scope(database_url) as session:
        now = session.scalar(select(func.now()))
    assert now is not None
    return now


def run_to_the_end(
    database_url: str,
    api_key: str,
    *,
    worker: str,
    queue_wait: float,
    took: float,
    completed: datetime,
    gpu_seconds: float = 2.0,
) -> str:
    """A prediction that waited ``queue_wait`` s, ran ``took`` s and succeeded at ``completed`` (backdated)."""
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        prediction = lifecycle.create_prediction(
            session,
            lifecycle.NewPrediction(
                api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": "x"}, seed=1, max_attempts=3
            ),
        )
    with session_scope(database_url) as session:
        claim = lifecycle.claim(session, prediction_id=prediction.id, worker=worker, lease_seconds=60)
        assert claim is not None
        cost = RunCost.of_run(gpu_seconds=gpu_seconds, gpu_class="test-gpu", gpu_hourly_usd=3.6, price_usd=0.02)
        assert lifecycle.succeed(session, claim, output_keys=["a", "b"], predict_time=took, cost=cost, logs="")
    started = completed - timedelta(seconds=took)
    with session_scope(database_url) as session:  # as if it had run then: the clock is the test's
        session.execute(
            update(Prediction)
            .where(Prediction.id == prediction.id)
            .values(created_at=started - timedelta(seconds=queue_wait), started_at=started, completed_at=completed)
        )
    return prediction.id


def read(database_url: str, cache: FinishedTotalsCache, now: datetime) -> FinishedTotals:
    with session_scope(database_url) as session:
        return cache.read(session, now)


def assert_same(one: FinishedTotals, other: FinishedTotals) -> None:
    """Equal, up to the rounding of float sums added in another order."""
    assert one.worker_last_finish == other.worker_last_finish
    assert one.webhook_attempts == other.webhook_attempts
    assert one.groups.keys() == other.groups.keys()
    for key, figures in one.groups.items():
        theirs = other.groups[key]
        assert (figures.count, figures.images) == (theirs.count, theirs.images), key
        for name in ("gpu_seconds", "cost_usd", "price_usd"):
            assert getattr(figures, name) == pytest.approx(getattr(theirs, name), rel=1e-12), (key, name)
        for name in ("queue_wait", "predict_time", "end_to_end"):
            mine, yours = getattr(figures, name), getattr(theirs, name)
            assert (mine.buckets, mine.count) == (yours.buckets, yours.count), (key, name)
            assert mine.total == pytest.approx(yours.total, rel=1e-12), (key, name)


def test_running_totals_equal_a_fresh_read_as_rows_settle(database_url: str, api_key: str) -> None:
    t0 = database_now(database_url)
    process = FinishedTotalsCache()
    before = read(database_url, process, t0)  # folds everything settled at t0

    # Settled by t1 but after the process's first watermark; and one still fresh at t1.
    run_to_the_end(
        database_url, api_key, worker="w-old", queue_wait=3.0, took=0.4, completed=t0 - SETTLE + timedelta(minutes=2)
    )
    run_to_the_end(database_url, api_key, worker="w-new", queue_wait=0.05, took=12.0, completed=t0)
    t1 = t0 + timedelta(minutes=5)

    after = read(database_url, process, t1)
    assert_same(after, read(database_url, FinishedTotalsCache(), t1))  # a process started now agrees
    assert_same(read(database_url, process, t1), after)  # reading again folds nothing twice

    key = (MODEL, "succeeded", "test-gpu")
    grown, was = after.groups[key], before.groups.get(key)
    assert grown.count - (was.count if was else 0) == 2
    assert grown.images - (was.images if was else 0) == 4
    assert grown.gpu_seconds - (was.gpu_seconds if was else 0) == 4.0
    assert round(grown.cost_usd - (was.cost_usd if was else 0), 8) == 0.004  # 4 GPU-seconds at $3.60/h
    old_buckets = was.queue_wait.buckets if was else [0] * len(LATENCY_BUCKETS)
    added = dict(
        zip(
            LATENCY_BUCKETS,
            [new - old for new, old in zip(grown.queue_wait.buckets, old_buckets, strict=True)],
            strict=True,
        )
    )
    assert added[0.1] == 1 and added[2.5] == 1 and added[5.0] == 2  # waits of 0.05 s and 3 s, cumulative
    assert after.worker_last_finish[("w-new", MODEL)] == t0
    assert ("w-old", MODEL) in after.worker_last_finish
    assert grown.lost_runs == (was.lost_runs if was else 0)  # both finished on their first claim


def test_live_figures_show_a_worker_whose_lease_lapsed(database_url: str, api_key: str) -> None:
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        prediction = lifecycle.create_prediction(
            session,
            lifecycle.NewPrediction(
                api_key_id=key.id, spec=SD35_MEDIUM, inputs={"prompt": "x"}, seed=1, max_attempts=3
            ),
        )
    with session_scope(database_url) as session:
        lost_before = farm_stats(session, FinishedTotalsCache(), lease_seconds=30).models[MODEL].lost_runs
        # A lease that is already over: the worker claimed it and never renewed.
        assert lifecycle.claim(session, prediction_id=prediction.id, worker="w-gone", lease_seconds=-5)
    with session_scope(database_url) as session:
        stats = farm_stats(session, FinishedTotalsCache(), lease_seconds=30)
        lapsed = stats.busy_workers[("w-gone", MODEL)]
        assert lapsed.lease_expires_at < stats.now
        assert lapsed.last_heartbeat_at == lapsed.lease_expires_at - timedelta(seconds=30)
        assert stats.models[MODEL].lease_expired >= 1
        assert stats.models[MODEL].lost_runs == lost_before  # still its claim: not lost until taken back
        assert stats.worker_last_seen()[("w-gone", MODEL)] == lapsed.last_heartbeat_at
    with session_scope(database_url) as session:
        requeued, _ = lifecycle.reap_expired_leases(session)  # what the relay does each poll
        assert prediction.id in requeued
    with session_scope(database_url) as session:
        stats = farm_stats(session, FinishedTotalsCache(), lease_seconds=30)
        assert stats.models[MODEL].lost_runs == lost_before + 1
        assert ("w-gone", MODEL) not in stats.busy_workers
        lifecycle.request_cancel(session, prediction_id=prediction.id)
    with session_scope(database_url) as session:  # canceled in the queue after its lost run: still one lost
        totals = FinishedTotalsCache().read(session, database_now(database_url))
        assert totals.groups[(MODEL, "canceled", "")].lost_runs >= 1
