"""The native prediction API over HTTP, against a gateway with no worker (predictions stay queued)."""

from datetime import datetime

import httpx
import psycopg
import pytest

from tests.farm import Farm

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
GOOD_INPUT = {"prompt": "a red fox in snow", "aspect_ratio": "16:9", "seed": 7}


def count_predictions(farm: Farm) -> int:
    url = farm.env["FARM_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM predictions").fetchone()
        assert row is not None
        return int(row[0])


def test_create_returns_201_starting_with_urls_and_seed(gateway: Farm) -> None:
    with gateway.client() as client:
        response = client.post(MODEL_PATH, json={"input": GOOD_INPUT})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "starting"
    assert body["model"] == "stability-ai/stable-diffusion-3.5-medium"
    assert len(body["version"]) == 64
    assert body["input"] == GOOD_INPUT
    assert body["seed"] == 7
    assert body["output"] is None
    assert body["urls"]["get"] == f"{gateway.url}/v1/predictions/{body['id']}"
    assert response.headers["location"] == body["urls"]["get"]
    assert body["created_at"].endswith("Z")


def test_curl_style_form_content_type_is_read_as_json(gateway: Farm) -> None:
    """`curl -d '{…}'` labels the body form-urlencoded; the quick start's curl must still work."""
    response = httpx.post(
        gateway.url + MODEL_PATH,
        content=b'{"input": {"prompt": "a red fox in snow"}}',
        headers={
            "Authorization": f"Bearer {gateway.key}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 201, response.text


def test_create_by_version_and_by_model_field(gateway: Farm) -> None:
    with gateway.client() as client:
        version = client.get("/v1/models/stability-ai/stable-diffusion-3.5-medium").json()["latest_version"]["id"]
        for body in (
            {"version": version, "input": GOOD_INPUT},
            {"version": f"stability-ai/stable-diffusion-3.5-medium:{version}", "input": GOOD_INPUT},
            {"model": "stability-ai/stable-diffusion-3.5-medium", "input": GOOD_INPUT},
        ):
            response = client.post("/v1/predictions", json=body)
            assert response.status_code == 201, (body, response.text)
            assert response.json()["version"] == version


def test_random_seed_is_chosen_and_returned(gateway: Farm) -> None:
    with gateway.client() as client:
        seeds = {
            client.post(MODEL_PATH, json={"input": {"prompt": "x", "seed": None}}).json()["seed"] for _ in range(3)
        }
    assert all(isinstance(seed, int) and 0 <= seed < 2**32 for seed in seeds)
    assert len(seeds) > 1


def test_get_returns_the_prediction_and_other_keys_get_404(gateway: Farm) -> None:
    with gateway.client() as client:
        created = client.post(MODEL_PATH, json={"input": GOOD_INPUT}).json()
        assert client.get(f"/v1/predictions/{created['id']}").json()["id"] == created["id"]
    with gateway.client(gateway.other_key) as other:
        assert other.get(f"/v1/predictions/{created['id']}").status_code == 404
        assert other.post(f"/v1/predictions/{created['id']}/cancel").status_code == 404
        listed = other.get("/v1/predictions").json()["results"]
        assert created["id"] not in {p["id"] for p in listed}


def test_unknown_prediction_is_404(gateway: Farm) -> None:
    with gateway.client() as client:
        response = client.get("/v1/predictions/doesnotexist")
    assert response.status_code == 404
    assert "doesnotexist" in response.json()["detail"]


def test_cancel_queued_prediction(gateway: Farm) -> None:
    with gateway.client() as client:
        created = client.post(MODEL_PATH, json={"input": GOOD_INPUT}).json()
        canceled = client.post(f"/v1/predictions/{created['id']}/cancel")
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        assert canceled.json()["completed_at"] is not None
        # Canceling again changes nothing.
        again = client.post(f"/v1/predictions/{created['id']}/cancel").json()
        assert again["status"] == "canceled"
        assert again["completed_at"] == canceled.json()["completed_at"]


def test_list_is_newest_first_and_pages_through_next(gateway: Farm) -> None:
    with gateway.client(gateway.other_key) as client:
        created = [client.post(MODEL_PATH, json={"input": {"prompt": f"p{i}"}}).json()["id"] for i in range(5)]
        seen: list[str] = []
        url: str | None = "/v1/predictions?page_size=2"
        while url:
            page = client.get(url).json()
            assert len(page["results"]) <= 2
            seen += [p["id"] for p in page["results"]]
            url = page["next"]
    assert seen[: len(created)] == list(reversed(created))
    assert len(seen) == len(set(seen))


def test_bad_cursor_is_422(gateway: Farm) -> None:
    with gateway.client() as client:
        response = client.get("/v1/predictions", params={"cursor": "garbage"})
    assert response.status_code == 422
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Missing API key"),
        ({"Authorization": "Bearer wrong"}, "Invalid"),
        ({"X-API-Key": "wrong"}, "Invalid"),
    ],
)
def test_missing_or_wrong_key_is_401(gateway: Farm, headers: dict[str, str], detail: str) -> None:
    response = httpx.post(gateway.url + MODEL_PATH, json={"input": GOOD_INPUT}, headers=headers)
    assert response.status_code == 401
    assert detail in response.json()["detail"]


def test_x_api_key_header_is_accepted(gateway: Farm) -> None:
    response = httpx.get(f"{gateway.url}/v1/predictions", headers={"X-API-Key": gateway.key})
    assert response.status_code == 200


def test_unknown_model_is_404_and_stores_nothing(gateway: Farm) -> None:
    before = count_predictions(gateway)
    with gateway.client() as client:
        scoped = client.post("/v1/models/acme/no-such-model/predictions", json={"input": GOOD_INPUT})
        by_version = client.post("/v1/predictions", json={"version": "acme/nope", "input": GOOD_INPUT})
    assert scoped.status_code == 404 and "acme/no-such-model" in scoped.json()["detail"]
    assert by_version.status_code == 404 and "acme/nope" in by_version.json()["detail"]
    assert count_predictions(gateway) == before


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ({"input": {"prompt": "x", "steps": 80}}, "input.steps", "less than or equal to 50"),
        ({"input": {"prompt": "x", "steps": "many"}}, "input.steps", "valid integer"),
        ({"input": {"prompt": ""}}, "input.prompt", "at least 1 character"),
        ({"input": {}}, "input.prompt", "Field required"),
        ({"input": {"prompt": "x", "aspect_ratio": "2:1"}}, "input.aspect_ratio", "'16:9'"),
        ({"input": {"prompt": "x", "output_format": "gif"}}, "input.output_format", "'webp'"),
        ({"input": {"prompt": "x", "width": 1000, "height": 1024}}, "input.width", "multiple of 16"),
        ({"input": {"prompt": "x", "width": 1024}}, "input", "width was set without height"),
        ({"input": {"prompt": "x", "cfg": 25}}, "input.cfg", "less than or equal to 20"),
        ({"input": {"prompt": "x", "seed": -1}}, "input.seed", "greater than or equal to 0"),
        ({"input": {"prompt": "x", "num_images": 5}}, "input.num_images", "less than or equal to 4"),
        ({"input": {"prompt": "x", "colour": "red"}}, "input.colour", "Extra inputs"),
        ({"input": {"prompt": "x", "steps": 0}}, "input.steps", "greater than or equal to 1"),
        ({"input": {"prompt": "x", "steps": "4.5"}}, "input.steps", "valid integer"),
        ({"input": {"prompt": "x", "cfg": -1}}, "input.cfg", "greater than or equal to 0"),
        ({"input": {"prompt": "x", "cfg": "strong"}}, "input.cfg", "valid number"),
        ({"input": {"prompt": "x", "seed": 2**32}}, "input.seed", "less than or equal to 4294967295"),
        ({"input": {"prompt": "x", "seed": "lucky"}}, "input.seed", "valid integer"),
        ({"input": {"prompt": "x", "num_images": 0}}, "input.num_images", "greater than or equal to 1"),
        ({"input": {"prompt": "x", "width": 1552, "height": 1024}}, "input.width", "less than or equal to 1536"),
        ({"input": {"prompt": "x", "width": 1024, "height": 240}}, "input.height", "greater than or equal to 256"),
        ({"input": {"prompt": "x", "output_quality": 101}}, "input.output_quality", "less than or equal to 100"),
        ({"input": {"prompt": "x", "output_quality": -1}}, "input.output_quality", "greater than or equal to 0"),
        ({"input": {"prompt": "x", "enable_safety_checker": "maybe"}}, "input.enable_safety_checker", "valid boolean"),
        ({"input": {"prompt": "x", "image_size": "huge"}}, "input.image_size", "'square_hd'"),
        ({"input": {"prompt": "x", "prompt_strength": 1.5}}, "input.prompt_strength", "less than or equal to 1"),
        ({"input": {"prompt": "x" * 10_001}}, "input.prompt", "at most 10000 characters"),
        ({"input": {"prompt": 42}}, "input.prompt", "valid string"),
        ({"prompt": "x"}, "input", "Field required"),
        ({"input": {"prompt": "x"}, "webhook": "http://127.0.0.1/hook"}, "webhook", "loopback"),
        (
            {"input": {"prompt": "x"}, "webhook": "http://10.0.0.1/h", "webhook_events_filter": ["x"]},
            "webhook_events_filter",
            "unknown event",
        ),
    ],
)
def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    gateway: Farm, body: dict[str, object], field: str, hint: str
) -> None:
    before = count_predictions(gateway)
    with gateway.client() as client:
        response = client.post(MODEL_PATH, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(field) or f"; {field}" in detail, detail
    assert hint in detail, detail
    assert field in {error["field"] for error in response.json()["errors"]}
    assert count_predictions(gateway) == before


def test_malformed_json_is_422(gateway: Farm) -> None:
    response = httpx.post(
        gateway.url + MODEL_PATH,
        content=b'{"input": {"prompt": ',
        headers={"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "JSON" in response.json()["detail"]


def test_string_numbers_are_coerced(gateway: Farm) -> None:
    with gateway.client() as client:
        response = client.post(MODEL_PATH, json={"input": {"prompt": "x", "cfg": "5", "steps": "40", "seed": "3"}})
    assert response.status_code == 201, response.text
    assert response.json()["seed"] == 3


def test_queued_predictions_report_their_place_in_the_queue(gateway: Farm) -> None:
    with gateway.client() as client:
        created = [client.post(MODEL_PATH, json={"input": GOOD_INPUT}).json() for _ in range(3)]
        positions = [client.get(f"/v1/predictions/{c['id']}").json()["queue_position"] for c in created]
        etas = [client.get(f"/v1/predictions/{c['id']}").json()["eta_seconds"] for c in created]
    assert positions[1] == positions[0] + 1 and positions[2] == positions[0] + 2
    # The create reads its standing before its row is written: the same place as its polls.
    assert [c["queue_position"] for c in created] == positions
    assert etas == [None, None, None]  # nothing has run on this farm, so no throughput is known


@pytest.mark.parametrize("value", ["1s", "soon", "5x", "-10", ""])
def test_bad_cancel_after_is_422_naming_the_header(gateway: Farm, value: str) -> None:
    before = count_predictions(gateway)
    with gateway.client() as client:
        response = client.post(MODEL_PATH, json={"input": GOOD_INPUT}, headers={"Cancel-After": value})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("Cancel-After:")
    assert count_predictions(gateway) == before


@pytest.mark.parametrize(("value", "seconds"), [("30s", 30), ("5m", 300), ("1h30m45s", 5445), ("90", 90)])
def test_cancel_after_sets_the_deadline(gateway: Farm, value: str, seconds: int) -> None:
    with gateway.client() as client:
        body = client.post(MODEL_PATH, json={"input": GOOD_INPUT}, headers={"Cancel-After": value}).json()
    created = datetime.fromisoformat(body["created_at"])
    deadline = datetime.fromisoformat(body["deadline"])
    assert abs((deadline - created).total_seconds() - seconds) < 2
