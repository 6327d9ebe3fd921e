"""Text Postgres cannot store (the NUL character) and ids no key could have: a 4xx naming the field, never a 500
(found by the fuzz test). The `gateway` fixture has no worker."""

from typing import Any

import httpx
import pytest

from models.db import session_scope
from models.keys import issue_api_key
from tests.farm import Farm

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
NUL = "\u0000"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/predictions/a%00b"),
        ("POST", "/v1/predictions/a%00b/cancel"),
        ("GET", "/v1/predictions/a%00b/stream"),
        ("GET", "/v1/predictions/a%00b/webhooks"),
        ("GET", "/v1/files/a%00b"),
        ("GET", "/v1/files/%C3%A9t%C3%A9/download"),
        ("GET", "/v1/prediction/a%00b"),
        ("GET", "/fal-ai/stable-diffusion-v35-medium/requests/a%00b/status"),
        ("PUT", "/fal-ai/stable-diffusion-v35-medium/requests/a%00b/cancel"),
    ],
)
def test_an_id_no_key_could_have_is_404(gateway: Farm, method: str, path: str) -> None:
    with gateway.client() as client:
        assert client.request(method, path).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (MODEL_PATH, {"input": {"prompt": f"a{NUL}fox"}}, "input.prompt"),
        (MODEL_PATH, {"input": {"prompt": "a fox", "negative_prompt": NUL}}, "input.negative_prompt"),
        ("/v1/images/generations", {"prompt": f"a{NUL}fox"}, "prompt"),
        ("/v1/webhooks/default/enable", {"url": f"https://example.com/{NUL}"}, "url"),
    ],
)
def test_a_nul_character_in_json_is_refused_naming_the_field(
    gateway: Farm, path: str, body: dict[str, Any], field: str
) -> None:
    with gateway.client() as client:
        refused = client.post(path, json=body)

    assert refused.status_code in (400, 422), refused.text  # OpenAI's door answers bad input with 400
    assert field in refused.text and "NUL character" in refused.text


@pytest.mark.parametrize(
    ("form", "field", "problem"),
    [
        ({"metadata": '{"note": "a\\u0000b"}'}, "metadata", "NUL character"),  # JSON's escape of NUL
        ({"filename": f"a{NUL}.png"}, "filename", "NUL character"),
        ({"type": f"image/png{NUL}"}, "type", "NUL character"),
        ({"type": "image/" + "x" * 300}, "type", "at most 200 characters"),
        ({"filename": "x" * 300}, "filename", "at most 255 characters"),
    ],
)
def test_an_upload_the_files_table_cannot_hold_is_422(
    gateway: Farm, form: dict[str, str], field: str, problem: str
) -> None:
    with gateway.client() as client:
        refused = client.post("/v1/files", files={"content": ("a.png", b"\x89PNG")}, data=form)

    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == field and problem in refused.json()["detail"]


def test_a_key_name_with_a_nul_character_is_refused(gateway: Farm) -> None:
    with session_scope(gateway.env["FARM_DATABASE_URL"]) as session:
        admin = issue_api_key(session, name="ops", is_admin=True)[1]
    refused = httpx.post(
        f"{gateway.url}/v1/admin/keys", json={"name": f"a{NUL}b"}, headers={"Authorization": f"Bearer {admin}"}
    )

    assert refused.status_code == 422 and "name" in refused.json()["detail"]
