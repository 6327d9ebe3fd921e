"""fal's own Python client, unmodified, against the farm over TLS.

fal_client reads its hosts when imported and speaks only HTTPS, so each scenario runs in a fresh
interpreter (tests/e2e/fal_session.py) with FAL_QUEUE_RUN_HOST at the TLS gateway, FAL_RUN_HOST at
its /run, and SSL_CERT_FILE at the test CA.
"""

import io
import json
import os
import subprocess
import sys
from typing import Any

import httpx
from PIL import Image

from tests.e2e.conftest import TlsGateway
from tests.services import REPO_ROOT

SCRIPT = REPO_ROOT / "tests" / "e2e" / "fal_session.py"


def scenario(gateway: TlsGateway, name: str, key: str | None = None) -> dict[str, Any]:
    host = gateway.url.removeprefix("https://")
    env = {
        **os.environ,
        "FAL_KEY": key or gateway.farm.key,
        "FAL_QUEUE_RUN_HOST": host,
        "FAL_RUN_HOST": f"{host}/run",
        "SSL_CERT_FILE": str(gateway.ca_file),
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), name], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"{done.stderr}\n{gateway.farm.tail_logs()}"
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen


def fetch_image(gateway: TlsGateway, url: str) -> Image.Image:
    response = httpx.get(url, verify=gateway.ssl_context(), timeout=30)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


def test_submit_status_queue_position_logs_cancel_and_result(tls_gateway: TlsGateway) -> None:
    seen = scenario(tls_gateway, "queue")

    running = seen["running"]
    assert running["type"] == "InProgress"
    assert all({"message", "level", "timestamp"} <= set(record) for record in running["logs"])
    assert any("/50" in record["message"] for record in running["logs"])  # tqdm progress lines
    assert seen["running_without_logs"] == {"type": "InProgress", "logs": None}
    assert seen["queued"] == {"type": "Queued", "position": 0}
    assert seen["queued_by_id"] == {"type": "Queued", "position": 0}

    result = seen["short_result"]
    assert result == seen["short_by_id"]
    assert [(image["width"], image["height"], image["content_type"]) for image in result["images"]] == [
        (256, 256, "image/jpeg")  # fal's default output_format
    ]
    assert fetch_image(tls_gateway, result["images"][0]["url"]).size == (256, 256)
    assert isinstance(result["seed"], int) and result["prompt"] == "a red fox"
    assert result["has_nsfw_concepts"] is None and result["timings"]["inference"] > 0

    completed = seen["short_completed"]
    assert completed["type"] == "Completed" and completed["metrics"]["inference_time"] > 0
    assert any("4/4" in record["message"] for record in completed["logs"])

    canceled = seen["long_completed"]
    assert canceled["type"] == "Completed" and canceled["error"]
    assert seen["cancel_again"]["status_code"] == 400
    assert seen["cancel_again"]["body"]["status"] == "ALREADY_COMPLETED"


def test_subscribe_follows_updates_and_applies_fals_defaults(tls_gateway: TlsGateway) -> None:
    seen = scenario(tls_gateway, "subscribe")

    types = [update["type"] for update in seen["updates"]]
    assert types[-1] == "Completed" and set(types) <= {"Queued", "InProgress", "Completed"}
    assert len(seen["enqueued"]) == 1
    image = seen["result"]["images"][0]
    # fal's defaults: landscape_4_3 (1024x768), jpeg; sync_mode accepted and ignored (URLs).
    assert (image["width"], image["height"], image["content_type"]) == (1024, 768, "image/jpeg")
    assert image["url"].startswith(tls_gateway.url)
    assert fetch_image(tls_gateway, image["url"]).format == "JPEG"


def test_sync_run_answers_the_result(tls_gateway: TlsGateway) -> None:
    seen = scenario(tls_gateway, "run")

    result = seen["result"]
    assert result["seed"] == 11
    assert [(image["width"], image["height"], image["content_type"]) for image in result["images"]] == [
        (256, 256, "image/png")
    ]
    assert fetch_image(tls_gateway, result["images"][0]["url"]).format == "PNG"


def test_errors_in_fals_shape(tls_gateway: TlsGateway) -> None:
    seen = scenario(tls_gateway, "errors")

    bad = seen["bad_input"]
    assert bad["status_code"] == 422
    assert bad["detail"][0]["loc"] == ["body", "num_inference_steps"] and bad["detail"][0]["msg"]
    assert seen["wrong_key"]["status_code"] == 401 and "key" in seen["wrong_key"]["detail"].lower()
    assert seen["unknown_request"]["status_code"] == 404


def test_fal_routes_do_not_shadow_the_native_surface(tls_gateway: TlsGateway) -> None:
    auth = {"Authorization": f"Key {tls_gateway.farm.key}"}
    with httpx.Client(base_url=tls_gateway.url, headers=auth, verify=tls_gateway.ssl_context()) as http:
        native = http.post("/v1/predictions", json={"model": "stability-ai/stable-diffusion-3.5-medium"})
        eachlabs = http.post("/v1/prediction", json={"input": {"prompt": "x"}})
    # Answered by the native and Eachlabs handlers (their error shapes), not as fal apps "v1/…".
    assert native.status_code == 422 and native.json()["errors"][0]["field"] == "input"
    assert eachlabs.status_code == 400 and eachlabs.json()["error"] == "model field is required"
