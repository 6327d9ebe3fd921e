"""Webhooks end to end: the farm's gateway, relay, worker and dispatcher processes posting to a real
receiver on loopback. Signatures are checked with the `standardwebhooks` library, not the farm's code."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import replicate
from sqlalchemy import func, select
from standardwebhooks import Webhook, WebhookVerificationError

from models.db import session_scope
from models.tables import Prediction
from tests.conftest import isolated_farm
from tests.farm import DISPATCHER_ARGV, JOB_TIMEOUT_S, Farm, spawn
from tests.services import TEST_REDIS_DB, free_port
from tests.webhook_receiver import Answer, Delivery, Receiver, webhook_receiver

REDIS_DB = TEST_REDIS_DB - 1  # the session fixtures in tests/conftest.py hold + 0 … + 3, test_scale_out + 4
SCHEDULE = (0, 0.2, 0.2, 0.2)  # four attempts, fast: the production schedule spans a day (tests/models)
QUICK = {"prompt": "a fox", "width": 256, "height": 256, "steps": 2, "output_format": "png"}
MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"


@pytest.fixture(scope="module")
def farm(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """A farm whose gateway and dispatcher may post to loopback receivers, with a short retry schedule."""
    root: Path = tmp_path_factory.mktemp("webhooks")
    settings = {
        "FARM_ALLOWED_NETWORKS": "127.0.0.0/8",
        "FARM_WEBHOOK_RETRY_SCHEDULE": ",".join(map(str, SCHEDULE)),
        "FARM_WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    with isolated_farm(
        postgres_server, redis_server, REDIS_DB, str(root / "outputs"), root, settings_env=settings
    ) as f:
        yield f


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def create(farm: Farm, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    with farm.client(key) as client:
        response = client.post(MODEL_PATH, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def deliveries_log(farm: Farm, prediction_id: str, key: str | None = None) -> list[dict[str, Any]]:
    with farm.client(key) as client:
        response = client.get(f"/v1/predictions/{prediction_id}/webhooks")
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def secret(farm: Farm, key: str | None = None) -> str:
    with farm.client(key) as client:
        return str(client.get("/v1/webhooks/default/secret").json()["key"])


def verified(delivery: Delivery, secret: str) -> dict[str, Any]:
    """The body, once its signature checks out with this secret."""
    return dict(Webhook(secret).verify(delivery.body, delivery.headers))


def unsigned(body: dict[str, Any]) -> dict[str, Any]:
    """The prediction with its output URLs' expiry and signature cut: two renderings may fall either side of a
    minute, where the expiry of a signed URL moves on."""
    return {**body, "output": [url.partition("?")[0] for url in body["output"] or []]}


def settled(farm: Farm, prediction_id: str, key: str | None = None) -> list[dict[str, Any]]:
    """The delivery log once no event is pending any more (the API is polled, as a customer would)."""
    farm.wait(prediction_id, key=key)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        events = deliveries_log(farm, prediction_id, key)
        if events and all(event["status"] != "pending" for event in events):
            return events
        time.sleep(0.05)  # a client's polling interval
    raise AssertionError(f"webhooks of {prediction_id} still pending: {events}\n{farm.tail_logs()}")


def stored_predictions(farm: Farm) -> int:
    with session_scope(farm.env["FARM_DATABASE_URL"]) as session:
        return int(session.scalar(select(func.count()).select_from(Prediction)) or 0)


# --- what is sent ---------------------------------------------------------------------------------------


def test_every_transition_arrives_once_signed_and_in_order(farm: Farm, receiver: Receiver) -> None:
    created = create(farm, {"input": {"prompt": "a red fox in snow", "seed": 1}, "webhook": f"{receiver.url}/hook"})
    events = settled(farm, created["id"])
    done = farm.wait(created["id"])

    names = [event["event"] for event in events]
    assert names[0] == "start" and names[-2:] == ["output", "completed"], names
    assert set(names[1:-2]) <= {"logs"}, names
    assert all(event["status"] == "delivered" for event in events), events
    assert len({event["id"] for event in events}) == len(events)
    by_id = {d.webhook_id: d for d in receiver.wait_for(lambda got: len(got) >= len(events))}
    assert len(receiver.deliveries) == len(events)  # one delivery per event: nothing sent twice
    key = secret(farm)
    bodies = {event["event"]: verified(by_id[event["id"]], key) for event in events}
    assert bodies["start"]["status"] == "processing"
    # The same object GET returns (and the URLs download: the dispatcher signs with the gateway's secret).
    assert unsigned(bodies["completed"]) == unsigned(bodies["output"]) == unsigned(done)
    assert all(httpx.get(url).status_code == 200 for url in bodies["completed"]["output"])
    assert by_id[events[-1]["id"]].path == "/hook"
    assert by_id[events[-1]["id"]].headers["content-type"] == "application/json"


def test_progress_events_are_throttled_to_one_per_half_second(farm: Farm, receiver: Receiver) -> None:
    created = create(farm, {"input": {"prompt": "a fox", "steps": 40}, "webhook": receiver.url})
    events = settled(farm, created["id"])

    progress = [event["created_at"] for event in events if event["event"] in ("start", "logs")]
    assert len(progress) >= 2, events  # 40 steps take over a second on this machine
    moments = [datetime.fromisoformat(stamp) for stamp in progress]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(moments, moments[1:], strict=False)]
    assert min(gaps) >= 0.5, gaps


@pytest.mark.parametrize("wanted", [["start"], ["logs"], ["output"], ["completed"], ["start", "completed"]])
def test_the_filter_selects_events(farm: Farm, receiver: Receiver, wanted: list[str]) -> None:
    created = create(
        farm,
        {"input": {"prompt": "a fox", "steps": 40}, "webhook": receiver.url, "webhook_events_filter": wanted},
    )
    events = settled(farm, created["id"])

    assert {event["event"] for event in events} == set(wanted)
    assert len(receiver.deliveries) == len(events)


# --- when the receiver fails ----------------------------------------------------------------------------


def test_a_receiver_that_fails_then_recovers_gets_the_event_once_with_one_id(farm: Farm) -> None:
    answers = [Answer(429, {"Retry-After": "1"}), Answer(503), Answer(200)]

    def plan(_: Delivery, earlier: int) -> Answer:
        return answers[earlier]

    with webhook_receiver(plan) as receiver:
        created = create(farm, {"input": QUICK, "webhook": receiver.url, "webhook_events_filter": ["completed"]})
        [event] = settled(farm, created["id"])
        got = receiver.wait_for(lambda got: len(got) == 3)

    assert event["status"] == "delivered"
    assert [attempt["status_code"] for attempt in event["attempts"]] == [429, 503, 200]
    assert [attempt["outcome"] for attempt in event["attempts"]] == ["rejected", "rejected", "delivered"]
    assert {d.webhook_id for d in got} == {event["id"]}
    key = secret(farm)
    assert [verified(d, key)["status"] for d in got] == ["succeeded"] * 3
    assert got[1].received_at - got[0].received_at >= 1.0  # Retry-After: 1 beat the 0.2 s schedule


def test_a_receiver_down_all_along_leaves_a_complete_log_and_the_prediction_untouched(farm: Farm) -> None:
    closed_port = free_port()  # nothing listens there
    created = create(
        farm,
        {"input": QUICK, "webhook": f"http://127.0.0.1:{closed_port}/", "webhook_events_filter": ["completed"]},
    )
    [event] = settled(farm, created["id"])

    assert event["status"] == "failed"
    assert len(event["attempts"]) == len(SCHEDULE)
    assert {attempt["outcome"] for attempt in event["attempts"]} == {"unreachable"}
    assert all("could not connect" in attempt["error"] for attempt in event["attempts"])
    done = farm.wait(created["id"])
    assert done["status"] == "succeeded" and len(done["output"]) == 1


def test_a_redirect_is_a_failure_and_is_not_followed(farm: Farm) -> None:
    def plan(delivery: Delivery, _: int) -> Answer:
        return Answer(302, {"Location": "/elsewhere"}) if delivery.path == "/moved" else Answer(200)

    with webhook_receiver(plan) as receiver:
        created = create(
            farm, {"input": QUICK, "webhook": f"{receiver.url}/moved", "webhook_events_filter": ["completed"]}
        )
        [event] = settled(farm, created["id"])
        paths = [delivery.path for delivery in receiver.deliveries]

    assert paths == ["/moved"] * len(SCHEDULE)
    assert event["status"] == "failed"
    assert "redirects are not followed" in event["attempts"][0]["error"]


def test_410_disables_the_url_until_re_enabled(farm: Farm) -> None:
    with webhook_receiver(lambda _, __: Answer(410)) as receiver:
        url = f"{receiver.url}/gone"
        created = create(farm, {"input": QUICK, "webhook": url, "webhook_events_filter": ["completed"]})
        [event] = settled(farm, created["id"])

        assert event["status"] == "disabled" and len(event["attempts"]) == 1
        with farm.client() as client:
            refused = client.post(MODEL_PATH, json={"input": QUICK, "webhook": url})
            assert refused.status_code == 422
            assert refused.json()["errors"][0]["field"] == "webhook" and "410" in refused.json()["detail"]
            assert client.post("/v1/webhooks/default/enable", json={"url": url}).status_code == 200
            assert client.post(MODEL_PATH, json={"input": QUICK, "webhook": url}).status_code == 201


def test_killing_the_dispatcher_mid_send_loses_nothing(farm: Farm) -> None:
    release = threading.Event()

    def plan(_: Delivery, earlier: int) -> Answer:
        return Answer(200, hold=release if earlier == 0 else None)

    with webhook_receiver(plan) as receiver:
        created = create(farm, {"input": QUICK, "webhook": receiver.url, "webhook_events_filter": ["completed"]})
        [first] = receiver.wait_for(lambda got: len(got) == 1)
        dispatcher = farm.processes["webhooks"]
        os.kill(dispatcher.pid, signal.SIGKILL)
        dispatcher.wait()
        release.set()
        farm.processes["webhooks"] = spawn("webhooks-restarted", DISPATCHER_ARGV, farm.env, farm.logs)
        [_, second] = receiver.wait_for(lambda got: len(got) == 2)
        [event] = settled(farm, created["id"])

    assert first.webhook_id == second.webhook_id == event["id"]
    assert event["status"] == "delivered"


# --- signing, redelivery -------------------------------------------------------------------------------


def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(farm: Farm, receiver: Receiver) -> None:
    key = farm.other_key  # rotation is per key: leave the other tests' key alone
    old = secret(farm, key)
    with farm.client(key) as client:
        rotated = client.post("/v1/webhooks/default/secret/rotate").json()
    new = secret(farm, key)
    assert rotated["key"] == new != old and new.startswith("whsec_")

    created = create(farm, {"input": QUICK, "webhook": receiver.url, "webhook_events_filter": ["completed"]}, key)
    settled(farm, created["id"], key)
    [delivery] = receiver.wait_for(lambda got: len(got) == 1)

    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    assert verified(delivery, old)["id"] == verified(delivery, new)["id"] == created["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(delivery.body.replace(b"succeeded", b"failed"), delivery.headers)


def test_redeliver_sends_the_last_event_again_with_its_id(farm: Farm, receiver: Receiver) -> None:
    created = create(farm, {"input": QUICK, "webhook": receiver.url, "webhook_events_filter": ["completed"]})
    [event] = settled(farm, created["id"])
    with farm.client() as client:
        response = client.post(f"/v1/predictions/{created['id']}/webhooks/redeliver")
        assert response.status_code == 202 and response.json()["id"] == event["id"]
        other = client.post(f"/v1/predictions/{created['id']}/webhooks/redeliver", headers={"Authorization": ""})
        assert other.status_code == 401

    got = receiver.wait_for(lambda got: len(got) == 2)
    assert {d.webhook_id for d in got} == {event["id"]}
    assert len(settled(farm, created["id"])[0]["attempts"]) == 2


def test_another_keys_delivery_log_is_not_found(farm: Farm, receiver: Receiver) -> None:
    created = create(farm, {"input": QUICK, "webhook": receiver.url, "webhook_events_filter": ["completed"]})
    with farm.client(farm.other_key) as client:
        assert client.get(f"/v1/predictions/{created['id']}/webhooks").status_code == 404
        assert client.post(f"/v1/predictions/{created['id']}/webhooks/redeliver").status_code == 404


def test_redeliver_without_a_webhook_says_why(farm: Farm) -> None:
    created = create(farm, {"input": QUICK})
    with farm.client() as client:
        response = client.post(f"/v1/predictions/{created['id']}/webhooks/redeliver")
    assert response.status_code == 409 and "without a webhook" in response.json()["detail"]


# --- other front doors ------------------------------------------------------------------------------------


def test_fal_webhook_gets_fals_payload_shape(farm: Farm, receiver: Receiver) -> None:
    with farm.client() as client:
        response = client.post(
            "/fal-ai/stable-diffusion-v35-medium", params={"fal_webhook": receiver.url}, json={"prompt": "a fox"}
        )
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    [delivery] = receiver.wait_for(lambda got: len(got) == 1)

    body = verified(delivery, secret(farm))
    assert body["request_id"] == body["gateway_request_id"] == request_id
    assert body["status"] == "OK" and body["error"] is None
    assert body["payload"]["images"][0]["url"].startswith("http")
    assert body["payload"]["seed"] == farm.wait(request_id)["seed"]


def test_eachlabs_webhook_url_gets_the_eachlabs_prediction(farm: Farm, receiver: Receiver) -> None:
    with farm.client() as client:
        response = client.post(
            "/v1/prediction/",
            json={"model": "stable-diffusion-3.5-medium", "input": QUICK, "webhook_url": receiver.url},
        )
    assert response.status_code == 200, response.text
    [delivery] = receiver.wait_for(lambda got: len(got) == 1)

    body = verified(delivery, secret(farm))
    assert body["id"] == response.json()["predictionID"]
    assert body["status"] == "success" and body["output"].startswith("http")


# --- refused at the door --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://100.64.0.1/hook", "carrier-grade NAT"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://[2002:7f00:1::]/hook", "6to4"),
        ("http://[64:ff9b::a00:1]/hook", "NAT64"),
        ("http://[fd00:ec2::254]/hook", "metadata"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://240.0.0.1/hook", "reserved"),
        ("http://0.0.0.0/hook", "this network"),
        ("ftp://example.com/hook", "only http and https"),
        ("not a url", "absolute URL"),
    ],
)
def test_a_webhook_into_a_blocked_network_is_refused(gateway: Farm, url: str, says: str) -> None:
    before = stored_predictions(gateway)
    with gateway.client() as client:
        response = client.post(MODEL_PATH, json={"input": QUICK, "webhook": url})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "webhook"
    assert says in response.json()["detail"]
    assert stored_predictions(gateway) == before


def test_loopback_is_refused_without_the_allow_list_and_never_contacted(gateway: Farm, receiver: Receiver) -> None:
    with gateway.client() as client:
        native = client.post(MODEL_PATH, json={"input": QUICK, "webhook": receiver.url})
        fal = client.post("/fal-ai/stable-diffusion-v35-medium", params={"fal_webhook": receiver.url}, json=QUICK)
        eachlabs = client.post(
            "/v1/prediction/",
            json={"model": "stable-diffusion-3.5-medium", "input": QUICK, "webhook_url": receiver.url},
        )
    assert native.status_code == 422 and "loopback" in native.json()["detail"]
    assert fal.status_code == 422 and fal.json()["detail"][0]["loc"] == ["body", "fal_webhook"]
    assert eachlabs.status_code == 400 and "webhook_url" in eachlabs.json()["detail"]
    assert receiver.deliveries == []


@pytest.mark.parametrize("wanted", [[], ["finished"], ["start", "bogus"]])
def test_an_unknown_event_filter_names_the_field(gateway: Farm, wanted: list[str]) -> None:
    with gateway.client() as client:
        response = client.post(
            MODEL_PATH, json={"input": QUICK, "webhook": "https://example.com/h", "webhook_events_filter": wanted}
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "webhook_events_filter"
    assert "start, output, logs, completed" in response.json()["detail"]


def test_the_replicate_client_sends_webhook_and_filter(farm: Farm, receiver: Receiver) -> None:
    client = replicate.Client(api_token=farm.key, base_url=farm.url)
    prediction = client.predictions.create(
        model="stability-ai/stable-diffusion-3.5-medium",
        input=QUICK,
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    [delivery] = receiver.wait_for(lambda got: len(got) == 1)
    assert verified(delivery, client.webhooks.default.secret().key)["id"] == prediction.id
