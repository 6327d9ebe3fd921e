"""GET /metrics over HTTP: the exposition parses, its numbers are those of the predictions, webhook attempts
and workers the test made, two gateways agree, and a worker killed mid-run shows up."""

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import isolated_farm
from tests.farm import BIN, JOB_TIMEOUT_S, TERMINAL, Farm, spawn, stop, wait_healthy
from tests.services import TEST_REDIS_DB, free_port
from tests.webhook_receiver import Answer, Delivery, webhook_receiver

REDIS_DB = TEST_REDIS_DB - 2  # tests/conftest.py holds + 0 … + 3, test_scale_out + 4, test_webhooks − 1
TOKEN = "metrics-test-token"
LEASE_S = 10  # short, so a killed worker's lease lapses within the test; longer than an upload
MODEL = "stability-ai/stable-diffusion-3.5-medium"
MODEL_PATH = f"/v1/models/{MODEL}/predictions"
QUICK = {"prompt": "a fox", "width": 256, "height": 256, "steps": 2, "output_format": "png"}

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


@pytest.fixture(scope="module")
def metrics_farm(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """A farm of its own (exact numbers), with a metrics token, a short lease, and webhooks to loopback."""
    root: Path = tmp_path_factory.mktemp("metrics")
    settings = {
        "FARM_METRICS_TOKEN": TOKEN,
        "FARM_LEASE_SECONDS": str(LEASE_S),
        "FARM_ALLOWED_NETWORKS": "127.0.0.0/8",
        "FARM_WEBHOOK_RETRY_SCHEDULE": "0,0.2",
    }
    with isolated_farm(
        postgres_server, redis_server, REDIS_DB, str(root / "outputs"), root, settings_env=settings
    ) as farm:
        yield farm


def scrape(url: str, token: str | None = TOKEN) -> Samples:
    """Every sample of the exposition, parsed by Prometheus' own parser: name → labels → value."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels (0 when absent), or the sum of all when none are given."""
    series = samples.get(name, {})
    if not labels:
        return sum(series.values())
    return series.get(frozenset(labels.items()), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def create(farm: Farm, body: dict[str, Any]) -> str:
    with farm.client() as client:
        response = client.post(MODEL_PATH, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_metrics_need_the_token_when_one_is_set(metrics_farm: Farm) -> None:
    assert httpx.get(f"{metrics_farm.url}/metrics").status_code == 401
    wrong = httpx.get(f"{metrics_farm.url}/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "FARM_METRICS_TOKEN" in wrong.json()["detail"]
    api_key = httpx.get(f"{metrics_farm.url}/metrics", headers={"Authorization": f"Bearer {metrics_farm.key}"})
    assert api_key.status_code == 401  # an API key is not the metrics token
    assert "farm_queue_depth" in scrape(metrics_farm.url)


def test_metrics_are_open_without_a_token(gateway: Farm) -> None:
    samples = scrape(gateway.url, token=None)
    assert value(samples, "farm_queue_depth", model=MODEL) >= 0


def test_finished_predictions_show_in_counters_and_histograms(metrics_farm: Farm) -> None:
    before = scrape(metrics_farm.url)
    ids = [create(metrics_farm, {"input": {**QUICK, "num_images": n}}) for n in (2, 1, 1)]
    bodies = [metrics_farm.wait(prediction_id) for prediction_id in ids]
    assert [body["status"] for body in bodies] == ["succeeded"] * 3, bodies
    after = scrape(metrics_farm.url)

    assert delta(before, after, "farm_predictions_total", model=MODEL, status="succeeded") == 3
    assert delta(before, after, "farm_images_total", model=MODEL) == 4
    for metric, name in [("gpu_seconds", "farm_gpu_seconds_total"), ("cost_usd", "farm_cost_usd_total")]:
        expected = sum(body["metrics"][metric] for body in bodies)
        assert delta(before, after, name) == pytest.approx(expected, rel=1e-6, abs=1e-8), name
    price = sum(body["metrics"]["price_usd"] for body in bodies)
    assert delta(before, after, "farm_price_usd_total", model=MODEL) == pytest.approx(price, rel=1e-9)

    # Each histogram holds the three runs, bucketed as their metrics say.
    for name, metric in [
        ("farm_queue_wait_seconds", "queue_time"),
        ("farm_predict_time_seconds", "predict_time"),
        ("farm_end_to_end_seconds", "total_time"),
    ]:
        seen = [body["metrics"][metric] for body in bodies]
        assert delta(before, after, f"{name}_count", model=MODEL) == 3, name
        assert delta(before, after, f"{name}_sum", model=MODEL) == pytest.approx(sum(seen), abs=1e-4), name
        for labels in after[f"{name}_bucket"]:
            bound = dict(labels)["le"]
            within = sum(1 for s in seen if bound == "+Inf" or s <= float(bound))
            assert delta(before, after, f"{name}_bucket", model=MODEL, le=bound) == within, (name, bound)

    # The worker that ran them was seen just now.
    ages = after["farm_worker_last_heartbeat_age_seconds"]
    assert ages and min(ages.values()) < 60, ages


def test_queue_depth_counts_queued_predictions_per_model(gateway: Farm) -> None:
    """No worker on this gateway's farm: what is created stays queued until canceled."""
    before = scrape(gateway.url, token=None)
    ids = [create(gateway, {"input": QUICK}) for _ in range(3)]
    queued = scrape(gateway.url, token=None)
    with gateway.client() as client:
        assert client.post(f"/v1/predictions/{ids[0]}/cancel").status_code == 200
    after = scrape(gateway.url, token=None)

    assert delta(before, queued, "farm_queue_depth", model=MODEL) == 3
    assert value(queued, "farm_queue_oldest_age_seconds", model=MODEL) > 0
    assert delta(before, after, "farm_queue_depth", model=MODEL) == 2
    assert delta(before, after, "farm_predictions_total", model=MODEL, status="canceled") == 1
    assert value(after, "farm_predictions_processing", model=MODEL) == 0


def test_webhook_attempts_are_counted_by_outcome(metrics_farm: Farm) -> None:
    def refuse_first(_: Delivery, earlier: int) -> Answer:
        return Answer(status=500 if earlier == 0 else 200)

    before = scrape(metrics_farm.url)
    with webhook_receiver(refuse_first) as receiver:
        prediction_id = create(
            metrics_farm, {"input": QUICK, "webhook": receiver.url, "webhook_events_filter": ["completed"]}
        )
        metrics_farm.wait(prediction_id)
        events = settled_deliveries(metrics_farm, prediction_id)
    after = scrape(metrics_farm.url)

    outcomes = Counter(attempt["outcome"] for event in events for attempt in event["attempts"])
    assert sum(outcomes.values()) == 2, events  # refused once, then delivered
    for outcome, count in outcomes.items():
        assert delta(before, after, "farm_webhook_attempts_total", outcome=outcome) == count, outcome
    assert delta(before, after, "farm_webhook_attempts_total") == 2


def settled_deliveries(farm: Farm, prediction_id: str) -> list[dict[str, Any]]:
    """The prediction's delivery log once no event is pending (polled, as a customer would)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    with farm.client() as client:
        while time.monotonic() < deadline:
            events = list(client.get(f"/v1/predictions/{prediction_id}/webhooks").json()["results"])
            if events and all(event["status"] != "pending" for event in events):
                return events
            time.sleep(0.05)  # a client's polling interval
    raise AssertionError(f"webhooks of {prediction_id} still pending\n{farm.tail_logs()}")


def test_two_gateway_processes_report_the_same_numbers(metrics_farm: Farm) -> None:
    create(metrics_farm, {"input": QUICK})  # something finished, something maybe queued
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    second = spawn("gateway-2", argv, metrics_farm.env, metrics_farm.logs)
    try:
        wait_healthy(url, second)
        for _ in range(10):  # a job that moves between the two scrapes changes the numbers: scrape again
            one, two = timeless(scrape(metrics_farm.url)), timeless(scrape(url))
            if one == two:
                break
    finally:
        stop(second)
    assert one.keys() == two.keys()
    for name, series in one.items():
        assert series == pytest.approx(two[name], rel=1e-9), name


def timeless(samples: Samples) -> Samples:
    """The samples without the values of ages, which each scrape measures at its own moment."""
    return {
        name: dict.fromkeys(series, 0.0) if name.endswith("age_seconds") else series for name, series in samples.items()
    }


def test_a_worker_killed_mid_run_shows_up(metrics_farm: Farm) -> None:
    """The pool child running a job is killed -9: its lease lapses, the relay's reaper requeues the prediction,
    and /metrics counts a lost run (Flower would still show the worker online)."""
    before = scrape(metrics_farm.url)
    prediction_id = create(
        metrics_farm, {"input": {"prompt": "a long fox", "width": 1536, "height": 1536, "steps": 50}}
    )
    running = metrics_farm.wait(prediction_id, statuses=("processing", *TERMINAL))
    assert running["status"] == "processing", running
    busy = scrape(metrics_farm.url)["farm_worker_lease_expires_timestamp_seconds"]
    assert len(busy) == 1, busy
    labels, expires = next(iter(busy.items()))
    assert expires > time.time()  # a live worker's lease ends in the future
    worker = dict(labels)["worker"]
    pid = int(worker.rsplit(":", 1)[1])  # worker names default to host:pid of the pool child
    assert psutil.Process(pid).ppid() == metrics_farm.processes["worker"].pid, "not this farm's pool child"
    os.kill(pid, signal.SIGKILL)

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while delta(before, samples := scrape(metrics_farm.url), "farm_runs_lost_total", model=MODEL) < 1:
        assert time.monotonic() < deadline, f"no lost run counted after the kill\n{metrics_farm.tail_logs()}"
        time.sleep(0.2)  # a scraper's interval
    assert delta(before, samples, "farm_runs_lost_total", model=MODEL) == 1

    # Celery's parent started a new child, which runs the requeued prediction to the end.
    assert metrics_farm.wait(prediction_id)["status"] == "succeeded"
    after = scrape(metrics_farm.url)
    assert delta(before, after, "farm_runs_lost_total", model=MODEL) == 1
    assert delta(before, after, "farm_predictions_total", model=MODEL, status="succeeded") == 1
    assert value(after, "farm_predictions_lease_expired", model=MODEL) == 0
