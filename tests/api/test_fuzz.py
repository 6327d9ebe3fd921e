"""Schemathesis against the gateway's own OpenAPI schema: every operation of every front door, over HTTP, with an
API key. Zero 5xx answers, every answer documented and in its documented schema, Allow headers right, bad input
refused and auth enforced; with a bounded number of examples per operation.

The schema is loaded from the app in this process (schemathesis' lazy fixture loader does not run on this pytest)
and checked to be the one the running gateway serves. The gateway has a worker behind it running the `simulated`
preset with no sleep, so the synchronous doors (OpenAI's images, fal's /run, Prefer: wait) answer with images
within the test's time instead of the 5xx they give when no worker comes.
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from sqlalchemy import text

from api.main import app
from models.db import session_scope
from models.keys import issue_api_key
from tests.conftest import isolated_farm
from tests.farm import Farm
from tests.services import TEST_REDIS_DB

REDIS_DB = TEST_REDIS_DB - 3  # conftest holds + 0 … + 3, test_scale_out + 4, test_webhooks − 1, test_metrics − 2
EXAMPLES_PER_OPERATION = 25
REQUEST_TIMEOUT_S = 60  # Prefer: wait answers within 60 s
FUZZ_KEY_IDS_FROM = 1_000_000

# Where "the schema admits it" does not mean "the farm accepts it", so positive_data_acceptance cannot hold:
NOT_JUDGED_BY_SCHEMA = {
    # Creates: `input` is checked against the chosen model's own schema (GET /v1/models/{owner}/{name}), webhook
    # and image URLs against the network (resolved, SSRF-guarded), and an Idempotency-Key reused with another body
    # is refused; none of it is expressible in the operation's schema.
    ("POST", "/v1/predictions"),
    ("POST", "/v1/models/{owner}/{name}/predictions"),
    ("POST", "/v1/images/generations"),
    ("POST", "/v1/prediction/"),
    ("POST", "/{owner}/{app}"),
    ("POST", "/run/{owner}/{app}"),
    # An upload carries one file (`content`, or `file`), and `metadata` must hold a JSON object as text.
    ("POST", "/v1/files"),
    # `cursor` is an opaque token that only this API issues (the `next`/`previous` of a page).
    ("GET", "/v1/predictions"),
    # `since`/`until` are ISO 8601 dates or times, `until` after `since`, at most 400 periods apart.
    ("GET", "/v1/usage"),
    ("GET", "/v1/admin/keys/{key_id}/usage"),
}

# Where a schema violation cannot survive serialization, so negative_data_rejection cannot hold: a multipart form's
# fields are all text (a number or an object sent there is a valid string) and an empty array is no field at all.
NEGATIVE_DATA_NOT_EXPRESSIBLE = {("POST", "/v1/files")}

schema = schemathesis.openapi.from_dict(app.openapi())


def key_headers(key: str) -> dict[str, str]:
    """Both ways a key travels, so neither carries a made-up key that would hide an operation behind a 401."""
    return {"Authorization": f"Bearer {key}", "X-API-Key": key}


@pytest.fixture(scope="module")
def fuzz_farm(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """A whole farm whose worker answers at once; at most 3 unfinished predictions per key keeps its queue short.
    Its ``key`` is the fuzzer's ordinary key, its ``other_key`` an admin key for the admin operations; both have
    ids far above the small ones the fuzzer makes up, so its revokes never hit them."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    env = {"FARM_MODEL_PRESET": "simulated", "FARM_SIMULATED_SECONDS": "0", "FARM_MAX_UNFINISHED_PER_KEY": "3"}
    with isolated_farm(postgres_server, redis_server, REDIS_DB, str(root / "outputs"), root, settings_env=env) as farm:
        with session_scope(farm.env["FARM_DATABASE_URL"]) as session:
            session.execute(text(f"SELECT setval('api_keys_id_seq', {FUZZ_KEY_IDS_FROM})"))
            key = issue_api_key(session, name="fuzz")[1]
            admin = issue_api_key(session, name="fuzz admin", is_admin=True)[1]
        yield dataclasses.replace(farm, key=key, other_key=admin)


def key_for(case: schemathesis.Case, farm: Farm) -> str:
    return farm.other_key if case.path.startswith("/v1/admin/") else farm.key


def test_the_fuzzed_schema_is_the_one_the_gateway_serves(fuzz_farm: Farm) -> None:
    assert httpx.get(f"{fuzz_farm.url}/openapi.json").json() == app.openapi()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    # The farm answers over HTTP from other processes: slow examples and filtered data are expected here.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_operation_answers_as_documented(case: schemathesis.Case, fuzz_farm: Farm) -> None:
    operation = (case.method.upper(), case.path)
    excluded = [positive_data_acceptance] if operation in NOT_JUDGED_BY_SCHEMA else []
    excluded += [negative_data_rejection] if operation in NEGATIVE_DATA_NOT_EXPRESSIBLE else []
    case.call_and_validate(
        base_url=fuzz_farm.url,
        headers=key_headers(key_for(case, fuzz_farm)),
        excluded_checks=excluded,
        timeout=REQUEST_TIMEOUT_S,
    )


def call(farm: Farm, method: str, path: str, status: int | None = None, **parts: Any) -> Any:
    """``method path`` called with ``parts`` (path_parameters, query, body, media_type) and its answer checked
    against the operation's schema: documented status, content type, headers and body (and ``status``, if given)."""
    case = schema[path][method].Case(**parts)
    response = case.call(base_url=farm.url, headers=key_headers(farm.key), timeout=REQUEST_TIMEOUT_S)
    case.validate_response(response)
    assert status is None or response.status_code == status, response.text
    return response


def test_operations_on_real_resources_answer_as_documented(fuzz_farm: Farm) -> None:
    """The fuzzer's ids name nothing; these calls reach real predictions, files and outputs, so the success
    answers (and the refusals that need a real resource) are checked against the schema too."""
    model_path = "/v1/models/{owner}/{name}/predictions"
    owner_name = {"owner": "stability-ai", "name": "stable-diffusion-3.5-medium"}
    created = call(fuzz_farm, "POST", model_path, path_parameters=owner_name, body={"input": {"prompt": "a fox"}})
    prediction = {"prediction_id": created.json()["id"]}
    done = fuzz_farm.wait(created.json()["id"])
    assert done["status"] == "succeeded", done

    call(fuzz_farm, "GET", "/v1/predictions/{prediction_id}", path_parameters=prediction)
    call(fuzz_farm, "GET", "/v1/predictions/{prediction_id}/stream", path_parameters=prediction)
    call(fuzz_farm, "POST", "/v1/predictions/{prediction_id}/cancel", path_parameters=prediction)
    call(fuzz_farm, "GET", "/v1/predictions/{prediction_id}/webhooks", path_parameters=prediction)
    call(fuzz_farm, "POST", "/v1/predictions/{prediction_id}/webhooks/redeliver", 409, path_parameters=prediction)
    call(fuzz_farm, "GET", "/v1/prediction/{prediction_id}", path_parameters=prediction)
    call(fuzz_farm, "POST", "/v1/prediction/{prediction_id}/cancel", 400, path_parameters=prediction)
    output = httpx.URL(done["output"][0])
    key = {"key": output.path.removeprefix("/files/")}
    call(fuzz_farm, "GET", "/files/{key}", path_parameters=key, query=dict(output.params))

    fal_app = {"owner": "fal-ai", "app": "stable-diffusion-v35-medium"}
    submitted = call(fuzz_farm, "POST", "/{owner}/{app}", path_parameters=fal_app, body={"prompt": "a fox"})
    request = {**fal_app, "request_id": submitted.json()["request_id"]}
    fuzz_farm.wait(request["request_id"])
    call(fuzz_farm, "GET", "/{owner}/{app}/requests/{request_id}/status", path_parameters=request)
    call(fuzz_farm, "GET", "/{owner}/{app}/requests/{request_id}", path_parameters=request)
    call(fuzz_farm, "PUT", "/{owner}/{app}/requests/{request_id}/cancel", 400, path_parameters=request)

    uploaded = call(fuzz_farm, "POST", "/v1/files", body={"content": b"\x89PNG"}, media_type="multipart/form-data")
    file = {"file_id": uploaded.json()["id"]}
    call(fuzz_farm, "GET", "/v1/files/{file_id}", path_parameters=file)
    call(fuzz_farm, "GET", "/v1/files/{file_id}/download", path_parameters=file)
