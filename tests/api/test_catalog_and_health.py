"""Catalog and health endpoints over HTTP."""

import httpx

from tests.farm import Farm

MODEL = "/v1/models/stability-ai/stable-diffusion-3.5-medium"


def test_model_lists_input_schema_with_defaults_and_limits(gateway: Farm) -> None:
    with gateway.client() as client:
        model = client.get(MODEL).json()
        listed = client.get("/v1/models").json()["results"]
    schema = model["latest_version"]["openapi_schema"]["components"]["schemas"]["Input"]
    assert schema["required"] == ["prompt"]
    steps = schema["properties"]["steps"]
    assert (steps["default"], steps["minimum"], steps["maximum"]) == (40, 1, 50)
    assert "16:9" in schema["properties"]["aspect_ratio"]["enum"]
    assert [m["name"] for m in listed] == ["stable-diffusion-3.5-medium"]


def test_version_endpoint_serves_the_latest_version_and_404s_others(gateway: Farm) -> None:
    with gateway.client() as client:
        version = client.get(MODEL).json()["latest_version"]["id"]
        found = client.get(f"{MODEL}/versions/{version}")
        missing = client.get(f"{MODEL}/versions/{'0' * 64}")
        unknown_model = client.get("/v1/models/acme/nothing")
    assert found.status_code == 200 and found.json()["id"] == version
    assert {"created_at", "cog_version", "openapi_schema"} <= found.json().keys()
    assert missing.status_code == 404
    assert unknown_model.status_code == 404


def test_healthz_and_readyz(gateway: Farm) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
