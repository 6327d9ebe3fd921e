"""The farm's figures (models/farm_stats.py) as Prometheus metric families.

Only figures read from Postgres: every gateway process answers a scrape with the same numbers, so
Prometheus may scrape any of them (no per-process counters, no client-side registry state).
"""

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from models.farm_stats import LATENCY_BUCKETS, FarmStats, FinishedFigures, Histogram
from models.status import TERMINAL


def bucket_pairs(histogram: Histogram) -> list[tuple[str, float]]:
    bounds = [(repr(bound), float(count)) for bound, count in zip(LATENCY_BUCKETS, histogram.buckets, strict=True)]
    return [*bounds, ("+Inf", float(histogram.count))]


def age(now: datetime, moment: datetime) -> float:
    return max(0.0, (now - moment).total_seconds())


class FarmCollector(Collector):
    """One scrape's metrics from a ``FarmStats`` read just before."""

    def __init__(self, stats: FarmStats) -> None:
        self.stats = stats

    def by_model(self) -> dict[str, FinishedFigures]:
        """Finished figures per model; every model with live figures too (zeros), so its series exist."""
        by_model = {model: FinishedFigures() for model in self.stats.models}
        for (model, _, _), figures in self.stats.finished.groups.items():
            by_model.setdefault(model, FinishedFigures()).add(figures)
        return by_model

    def collect(self) -> Iterator[Metric]:
        yield from self.queue()
        yield from self.finished()
        yield from self.latencies()
        yield from self.workers()
        yield from self.webhooks()

    def queue(self) -> Iterator[Metric]:
        now, models = self.stats.now, self.stats.models
        depth = GaugeMetricFamily(
            "farm_queue_depth", "Predictions queued (status starting) per model, from Postgres.", labels=["model"]
        )
        oldest = GaugeMetricFamily(
            "farm_queue_oldest_age_seconds",
            "Age of the oldest queued prediction per model (0 when none); grows while no worker takes jobs.",
            labels=["model"],
        )
        processing = GaugeMetricFamily(
            "farm_predictions_processing", "Predictions a worker is running now, per model.", labels=["model"]
        )
        expired = GaugeMetricFamily(
            "farm_predictions_lease_expired",
            "Running predictions whose lease lapsed, not yet taken back by the relay's reaper (lasting: no relay).",
            labels=["model"],
        )
        for model, live in sorted(models.items()):
            depth.add_metric([model], live.queued)
            oldest.add_metric([model], 0.0 if live.oldest_queued_at is None else age(now, live.oldest_queued_at))
            processing.add_metric([model], live.processing)
            expired.add_metric([model], live.lease_expired)
        yield from (depth, oldest, processing, expired)

    def finished(self) -> Iterator[Metric]:
        predictions = CounterMetricFamily(
            "farm_predictions", "Predictions that ended, by model and terminal status.", labels=["model", "status"]
        )
        images = CounterMetricFamily("farm_images", "Images delivered by succeeded predictions.", labels=["model"])
        gpu_seconds = CounterMetricFamily(
            "farm_gpu_seconds",
            "GPU time held by runs (claim to finalize), all outcomes.",
            labels=["model", "gpu_class"],
        )
        cost = CounterMetricFamily(
            "farm_cost_usd",
            "Operator's cost of that GPU time at each worker's hourly price.",
            labels=["model", "gpu_class"],
        )
        price = CounterMetricFamily(
            "farm_price_usd", "What callers were charged under each model's pricing rule.", labels=["model"]
        )
        lost = CounterMetricFamily(
            "farm_runs_lost",
            "Runs cut off because their worker stopped renewing the lease (killed, OOM, hung); the prediction "
            "was requeued or, out of attempts, failed.",
            labels=["model"],
        )
        by_status = {(model, status.value): 0 for model in self.stats.models for status in TERMINAL}
        by_gpu: dict[tuple[str, str], FinishedFigures] = defaultdict(FinishedFigures)
        for (model, status, gpu_class), figures in self.stats.finished.groups.items():
            by_status[(model, status)] = by_status.get((model, status), 0) + figures.count
            by_gpu[(model, gpu_class)].add(figures)
        for (model, status), count in sorted(by_status.items()):
            predictions.add_metric([model, status], count)
        for model, figures in sorted(self.by_model().items()):
            images.add_metric([model], figures.images)
            price.add_metric([model], figures.price_usd)
            live = self.stats.models.get(model)
            lost.add_metric([model], figures.lost_runs + (live.lost_runs if live else 0))
        for (model, gpu_class), figures in sorted(by_gpu.items()):
            if figures.gpu_seconds or gpu_class:  # predictions canceled in the queue never held a GPU
                gpu_seconds.add_metric([model, gpu_class], figures.gpu_seconds)
                cost.add_metric([model, gpu_class], figures.cost_usd)
        yield from (predictions, images, gpu_seconds, cost, price, lost)

    def latencies(self) -> Iterator[Metric]:
        families = {
            "queue_wait": HistogramMetricFamily(
                "farm_queue_wait_seconds",
                "Created to first claimed by a worker, for predictions that ended after starting.",
                labels=["model"],
            ),
            "predict_time": HistogramMetricFamily(
                "farm_predict_time_seconds", "The pipeline's run time of ended predictions.", labels=["model"]
            ),
            "end_to_end": HistogramMetricFamily(
                "farm_end_to_end_seconds", "Created to completed, for succeeded predictions.", labels=["model"]
            ),
        }
        for model, figures in sorted(self.by_model().items()):
            for name, family in families.items():
                histogram: Histogram = getattr(figures, name)
                family.add_metric([model], bucket_pairs(histogram), histogram.total)
        yield from families.values()

    def workers(self) -> Iterator[Metric]:
        now = self.stats.now
        lease = GaugeMetricFamily(
            "farm_worker_lease_expires_timestamp_seconds",
            "Per busy worker: when the latest lease among its running predictions expires (Unix time). "
            "In the past: the worker stopped renewing it.",
            labels=["worker", "model"],
        )
        heartbeat = GaugeMetricFamily(
            "farm_worker_last_heartbeat_age_seconds",
            "Per worker seen in the last day: seconds since its last claim, lease renewal or finished run.",
            labels=["worker", "model"],
        )
        for (name, model), live in sorted(self.stats.busy_workers.items()):
            lease.add_metric([name, model], live.lease_expires_at.timestamp())
        for (name, model), seen in sorted(self.stats.worker_last_seen().items()):
            heartbeat.add_metric([name, model], age(now, seen))
        yield from (lease, heartbeat)

    def webhooks(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "farm_webhook_attempts", "Webhook delivery attempts, by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(self.stats.finished.webhook_attempts.items()):
            attempts.add_metric([outcome], count)
        yield attempts
