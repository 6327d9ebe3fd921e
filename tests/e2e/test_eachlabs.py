"""Eachlabs' published Python sample (requests: create, then poll until success or error) against the farm."""

import io
import time
from typing import Any

import requests
from PIL import Image

from tests.farm import JOB_TIMEOUT_S, Farm

# The sample's body (numbers as strings, "seed": null), less its placeholder "image", with few steps.
SAMPLE_INPUT = {
    "cfg": "5",
    "seed": None,
    "steps": "3",
    "prompt": "your prompt here",
    "aspect_ratio": "16:9",
    "output_format": "webp",
    "output_quality": "90",
    "prompt_strength": "0.85",
}


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": "application/json"}


def create_prediction(farm: Farm, inputs: dict[str, Any], path: str = "/v1/prediction/") -> str:
    response = requests.post(
        farm.url + path,
        headers=headers(farm.key),
        json={"model": "stable-diffusion-3.5-medium", "version": "0.0.1", "input": inputs},
        timeout=30,
    )
    prediction = response.json()
    if prediction["status"] != "success":
        raise Exception(f"Prediction failed: {prediction}")
    return str(prediction["predictionID"])


def get_prediction(farm: Farm, prediction_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        result: dict[str, Any] = requests.get(
            f"{farm.url}/v1/prediction/{prediction_id}", headers=headers(farm.key), timeout=30
        ).json()
        if result["status"] == "success":
            return result
        elif result["status"] == "error":
            raise Exception(f"Prediction failed: {result}")
        time.sleep(0.1)  # the sample waits 1 s
    raise AssertionError(f"{prediction_id} not done: {result}")


def test_sample_creates_and_polls_to_success(farm: Farm) -> None:
    result = get_prediction(farm, create_prediction(farm, SAMPLE_INPUT))

    assert isinstance(result["output"], str)
    image = Image.open(io.BytesIO(requests.get(result["output"], timeout=30).content))
    assert (image.format, image.size) == ("WEBP", (1344, 768))
    assert result["metrics"]["predict_time"] > 0
    assert result["metrics"]["cost"] == round(0.02 * 1344 * 768 / 1e6, 8)
    assert result["input"]["steps"] == "3" and result["logs"]
    assert result["urls"]["get"].endswith(f"/v1/prediction/{result['id']}")


def test_path_without_trailing_slash_and_cancel(farm: Farm) -> None:
    long = {"prompt": "slow", "width": 1536, "height": 1536, "steps": "50", "num_images": "4"}
    prediction_id = create_prediction(farm, long, path="/v1/prediction")
    cancel = requests.post(f"{farm.url}/v1/prediction/{prediction_id}/cancel", headers=headers(farm.key), timeout=30)
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    done = farm.wait(prediction_id)
    assert done["status"] == "canceled"
    body = requests.get(f"{farm.url}/v1/prediction/{prediction_id}", headers=headers(farm.key), timeout=30).json()
    assert (body["status"], body["output"]) == ("cancelled", None)
    again = requests.post(f"{farm.url}/v1/prediction/{prediction_id}/cancel", headers=headers(farm.key), timeout=30)
    assert again.status_code == 400 and "error" in again.json()


def test_errors_in_eachlabs_shape(farm: Farm) -> None:
    def post(body: dict[str, Any], key: str = farm.key) -> requests.Response:
        return requests.post(f"{farm.url}/v1/prediction/", headers=headers(key), json=body, timeout=30)

    bad = post({"model": "stable-diffusion-3.5-medium", "version": "0.0.1", "input": {"prompt": "x", "steps": "500"}})
    assert bad.status_code == 400
    assert bad.json()["error"] == "Invalid input for model" and "input.steps" in bad.json()["detail"]

    missing = post({"input": {"prompt": "x"}})
    assert (missing.status_code, missing.json()["error"]) == (400, "model field is required")
    unknown_model = post({"model": "flux-1-1-pro", "input": {"prompt": "x"}})
    assert (unknown_model.status_code, unknown_model.json()) == (404, {"error": "Model not found"})

    wrong_key = post({"model": "stable-diffusion-3.5-medium", "input": {"prompt": "x"}}, key="nope")
    assert wrong_key.status_code == 401 and wrong_key.json()["error"] == "Invalid or missing API key"

    unknown = requests.get(f"{farm.url}/v1/prediction/nope", headers=headers(farm.key), timeout=30)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Prediction not found"})
