"""Output URLs of local storage through HTTP: signed, expiring, the same secret in every gateway process, and
kept out of the access log with the keys."""

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from models.url_signing import UrlSigner, url_signing_secret
from tests.farm import Farm, extra_gateway

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
SMALL = {"prompt": "a red fox", "steps": 2, "width": 256, "height": 256, "output_format": "png"}
HOUR = 3600


@pytest.fixture(scope="module")
def done(farm: Farm) -> dict[str, Any]:
    """One finished prediction of farm.key's."""
    with farm.client() as client:
        created = client.post(MODEL_PATH, json={"input": SMALL})
    assert created.status_code == 201, created.text
    finished = farm.wait(created.json()["id"])
    assert finished["status"] == "succeeded", finished
    return finished


@pytest.fixture(scope="module")
def short_url_gateway(farm: Farm) -> Iterator[Farm]:
    """A second gateway process over the same farm whose URLs live two minutes."""
    with extra_gateway(farm, {"FARM_OUTPUT_URL_SECONDS": "120"}, "gateway-short-urls") as running:
        yield running


def signed(url: str) -> httpx.URL:
    parsed = httpx.URL(url)
    assert parsed.path.startswith("/files/outputs/") and set(parsed.params) == {"expires", "signature"}, url
    return parsed


def test_an_output_url_is_signed_and_lives_an_hour(farm: Farm, done: dict[str, Any]) -> None:
    url = signed(done["output"][0])
    expires = int(url.params["expires"]) - time.time()

    assert HOUR - 5 <= expires <= HOUR + 60, expires  # rounded up to the minute
    image = httpx.get(str(url))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda url: url.copy_with(query=None), "not signed"),
        (lambda url: url.copy_set_param("signature", "A" + url.params["signature"][1:]), "does not match"),
        (lambda url: url.copy_set_param("expires", str(int(url.params["expires"]) + 60)), "does not match"),
        (lambda url: url.copy_with(path=url.path.replace("/0.png", "/1.png")), "does not match"),
    ],
)
def test_a_tampered_url_is_403_saying_to_fetch_the_prediction_again(
    done: dict[str, Any], tamper: Any, reason: str
) -> None:
    refused = httpx.get(str(tamper(signed(done["output"][0]))))

    assert refused.status_code == 403
    assert reason in refused.json()["detail"] and "fetch the prediction again" in refused.json()["detail"]


def test_an_expired_url_is_403_and_a_fresh_get_gives_a_working_one(farm: Farm, done: dict[str, Any]) -> None:
    url = signed(done["output"][0])
    key = url.path.removeprefix("/files/")
    # Signed with the farm's own secret (from its database) but an expiry already past: only time differs.
    signer = UrlSigner(lambda: url_signing_secret(farm.env["FARM_DATABASE_URL"]), HOUR)
    past = int(time.time()) - 1
    expired = url.copy_merge_params({"expires": str(past), "signature": signer.signature(key, past)})

    refused = httpx.get(str(expired))
    assert refused.status_code == 403
    assert "expired at" in refused.json()["detail"] and "fetch the prediction again" in refused.json()["detail"]
    with farm.client() as client:
        fresh = client.get(f"/v1/predictions/{done['id']}").json()["output"][0]
    assert httpx.get(fresh).status_code == 200


def test_a_signed_url_of_a_missing_file_is_404(farm: Farm) -> None:
    signer = UrlSigner(lambda: url_signing_secret(farm.env["FARM_DATABASE_URL"]), HOUR)
    key = "outputs/nosuchprediction/1/0.png"

    assert httpx.get(f"{farm.url}/files/{key}?{signer.query(key)}").status_code == 404


def test_every_gateway_signs_with_the_same_secret_and_its_own_lifetime(
    farm: Farm, short_url_gateway: Farm, done: dict[str, Any]
) -> None:
    with short_url_gateway.client() as client:
        body = client.get(f"/v1/predictions/{done['id']}").json()
    url = signed(body["output"][0])

    assert 120 - 5 <= int(url.params["expires"]) - time.time() <= 120 + 60
    assert httpx.get(str(url)).status_code == 200  # the gateway that signed it
    assert httpx.get(str(url.copy_with(host="127.0.0.1", port=httpx.URL(farm.url).port))).status_code == 200


def test_another_key_cannot_get_the_prediction_that_holds_the_urls(farm: Farm, done: dict[str, Any]) -> None:
    with farm.client(farm.other_key) as client:
        assert client.get(f"/v1/predictions/{done['id']}").status_code == 404
        listed = client.get("/v1/predictions").json()["results"]
    assert done["id"] not in {prediction["id"] for prediction in listed}


def test_the_access_log_holds_neither_keys_nor_signatures(farm: Farm, done: dict[str, Any]) -> None:
    with extra_gateway(farm, {}, "gateway-access-log") as gateway:
        with gateway.client() as client:
            output = signed(client.get(f"/v1/predictions/{done['id']}").json()["output"][0])
        assert httpx.get(str(output)).status_code == 200
        with httpx.Client(base_url=gateway.url) as client:  # the key as each scheme and header carries it
            client.get("/v1/predictions", headers={"X-API-Key": farm.other_key})
            client.get(f"/v1/predictions?api_key={farm.key}", headers={"Authorization": f"Token {farm.key}"})
        log = (farm.logs / "gateway-access-log.log").read_text()

    assert f'"GET {output.path}?[query omitted] HTTP/1.1" 200' in log  # the download was logged, without query
    assert "/v1/predictions?[query omitted]" in log
    assert output.params["signature"] not in log
    assert farm.key not in log and farm.other_key not in log
