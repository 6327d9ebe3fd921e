"""Replicate's own Python client, unmodified, against the farm: blocking and polling runs, versions,
file outputs, progress, cancel, list paging and the webhook secret."""

import base64
import hashlib
import hmac
import io
import time
from typing import Any

import httpx
import pytest
import replicate
from PIL import Image
from replicate.client import Client
from replicate.exceptions import ReplicateError
from replicate.helpers import FileOutput
from replicate.webhook import InvalidSignatureError

from tests.e2e.conftest import TlsGateway
from tests.farm import Farm

MODEL = "stability-ai/stable-diffusion-3.5-medium"
SMALL = {"prompt": "a red fox", "width": 256, "height": 256, "steps": 4, "output_format": "png"}
# Many seconds of tiny-pipeline work: still running when the test acts on it (and canceled then).
LONG = {"prompt": "a slow one", "width": 1536, "height": 1536, "steps": 50, "num_images": 4}


def client_for(url: str, key: str, requests: list[str], **kwargs: Any) -> Client:
    """A client recording ``METHOD path`` of each request it sends."""

    def record(request: httpx.Request) -> None:
        requests.append(f"{request.method} {request.url.path}")

    return Client(api_token=key, base_url=url, event_hooks={"request": [record]}, **kwargs)


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size


def test_run_answers_in_one_blocking_request(farm: Farm) -> None:
    sent: list[str] = []
    output = client_for(farm.url, farm.key, sent).run(MODEL, input=SMALL)

    # Prefer: wait answered with the finished prediction: no polling.
    assert sent == [f"POST /v1/models/{MODEL}/predictions"]
    # The client wraps only https/data URLs in file objects; plain http URLs stay strings.
    assert isinstance(output, list) and len(output) == 1 and isinstance(output[0], str)
    assert png_size(httpx.get(output[0]).content) == (256, 256)


def test_run_by_version_gives_file_outputs_that_read_over_https(tls_gateway: TlsGateway) -> None:
    version = httpx.get(
        f"{tls_gateway.url}/v1/models/{MODEL}",
        headers={"Authorization": f"Bearer {tls_gateway.farm.key}"},
        verify=tls_gateway.ssl_context(),
    ).json()["latest_version"]["id"]
    sent: list[str] = []
    transport = httpx.HTTPTransport(verify=tls_gateway.ssl_context())
    client = client_for(tls_gateway.url, tls_gateway.farm.key, sent, transport=transport)

    output = client.run(f"{MODEL}:{version}", input={**SMALL, "num_images": 2})

    assert sent[:2] == ["POST /v1/predictions", f"GET /v1/models/{MODEL}/versions/{version}"]
    assert isinstance(output, list) and all(isinstance(item, FileOutput) for item in output)
    assert [png_size(item.read()) for item in output] == [(256, 256), (256, 256)]
    assert all(str(item).startswith(f"{tls_gateway.url}/files/") for item in output)


def test_unfinished_blocking_answer_says_starting_then_the_client_polls_cancel_and_progress(farm: Farm) -> None:
    with farm.client() as http:
        response = http.post(f"/v1/models/{MODEL}/predictions", json={"input": LONG}, headers={"Prefer": "wait=1"})
    long_running = response.json()
    # Replicate's rule: an unfinished blocking answer says "starting" (its clients poll only then).
    assert (response.status_code, long_running["status"]) == (202, "starting")
    assert response.headers["preference-applied"] == "wait=1"
    assert response.headers["location"] == long_running["urls"]["get"]

    client = Client(api_token=farm.key, base_url=farm.url)
    queued = client.predictions.create(model=MODEL, input={**SMALL, "steps": 8}, wait=1)
    assert queued.status == "starting"  # behind the long one

    canceled = client.predictions.cancel(long_running["id"])
    assert canceled.status in ("processing", "canceled")
    queued.wait()  # polls GET /v1/predictions/{id}
    assert queued.status == "succeeded"
    assert queued.progress is not None
    assert (queued.progress.current, queued.progress.total, queued.progress.percentage) == (8, 8, 1.0)

    long_done = client.predictions.get(long_running["id"])
    long_done.wait()
    assert (long_done.status, long_done.output) == ("canceled", None)


def test_prefer_wait_header_finished_answer_and_bad_values(farm: Farm) -> None:
    with farm.client() as http:
        done = http.post(f"/v1/models/{MODEL}/predictions", json={"input": SMALL}, headers={"Prefer": "wait=30"})
        assert done.status_code == 201, done.text
        assert done.headers["preference-applied"] == "wait=30"
        assert done.json()["status"] == "succeeded" and len(done.json()["output"]) == 1
        for bad in ("wait=0", "wait=61", "wait=5s"):
            response = http.post(f"/v1/models/{MODEL}/predictions", json={"input": SMALL}, headers={"Prefer": bad})
            assert response.status_code == 422, bad
            assert response.json()["errors"][0]["field"] == "Prefer"


def test_bad_input_raises_the_clients_error_with_the_field(farm: Farm) -> None:
    client = Client(api_token=farm.key, base_url=farm.url)
    with pytest.raises(ReplicateError) as raised:
        client.predictions.create(model=MODEL, input={"prompt": "x", "steps": 500})
    assert raised.value.status == 422
    assert raised.value.detail is not None and "input.steps" in raised.value.detail


def test_list_pages_through_next_and_previous(farm: Farm) -> None:
    client = Client(api_token=farm.other_key, base_url=farm.url)
    created = [client.predictions.create(model=MODEL, input={**SMALL, "steps": 1}).id for _ in range(3)]
    newest_first = created[::-1]

    first = client.predictions.list(f"{farm.url}/v1/predictions?page_size=2")
    assert [p.id for p in first] == newest_first[:2] and first.previous is None and first.next
    second = client.predictions.list(first.next)
    assert [p.id for p in second][:1] == newest_first[2:]
    assert second.previous
    back = client.predictions.list(second.previous)
    assert [p.id for p in back] == newest_first[:2] and back.previous is None
    assert [p.id for p in client.predictions.list(back.next)] == [p.id for p in second]
    assert all(p.status in ("starting", "processing", "succeeded", "failed", "canceled") for p in first)


def test_webhook_secret_is_stable_per_key_and_validates_signatures(farm: Farm) -> None:
    mine = Client(api_token=farm.key, base_url=farm.url).webhooks.default.secret()
    again = Client(api_token=farm.key, base_url=farm.url).webhooks.default.secret()
    other = Client(api_token=farm.other_key, base_url=farm.url).webhooks.default.secret()
    assert mine.key == again.key != other.key
    assert mine.key.startswith("whsec_") and len(base64.b64decode(mine.key.removeprefix("whsec_"))) == 32

    # The client's own validator accepts a Standard Webhooks signature made with the secret.
    body, webhook_id, timestamp = '{"id": "p1"}', "msg_1", str(int(time.time()))
    key = base64.b64decode(mine.key.removeprefix("whsec_"))
    signed = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(signed).decode(),
    }
    replicate.webhooks.validate(headers=headers, body=body, secret=mine)  # raises when invalid
    with pytest.raises(InvalidSignatureError):
        replicate.webhooks.validate(headers=headers, body=body, secret=other)
