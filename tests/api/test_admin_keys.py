"""Key management over HTTP: admin keys only (403 for ordinary keys), keys shown once, limits that apply from
the next request, any key's usage. The `gateway` fixture has no worker: predictions stay queued."""

from typing import Any

import pytest

from models.db import session_scope
from models.keys import issue_api_key
from tests.farm import Farm

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
SECRET_FIELDS = {"key_hash", "webhook_secret", "previous_webhook_secret"}


@pytest.fixture(scope="module")
def admin(gateway: Farm) -> str:
    with session_scope(gateway.env["FARM_DATABASE_URL"]) as session:
        return issue_api_key(session, name="ops", is_admin=True)[1]


def key_id(gateway: Farm, admin: str, key: str) -> int:
    with gateway.client(admin) as client:
        listed = client.get("/v1/admin/keys").json()["results"]
    return next(row["id"] for row in listed if key.startswith(row["prefix"]))


ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/admin/keys", None),
    ("POST", "/v1/admin/keys", {"name": "sneaky", "is_admin": True}),
    ("PATCH", "/v1/admin/keys/1", {"rate_limit_per_minute": 1}),
    ("POST", "/v1/admin/keys/1/revoke", None),
    ("GET", "/v1/admin/keys/1/usage", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_an_ordinary_key_gets_403_and_no_key_gets_401(
    gateway: Farm, method: str, path: str, body: dict[str, Any] | None
) -> None:
    with gateway.client() as client:
        refused = client.request(method, path, json=body)
    assert refused.status_code == 403
    assert "admin key" in refused.json()["detail"] and "farm keys" in refused.json()["detail"]
    with gateway.client("farm_not-a-key") as client:
        assert client.request(method, path, json=body).status_code == 401


def test_admin_lists_every_key_by_prefix_never_the_key_or_its_secrets(gateway: Farm, admin: str) -> None:
    with gateway.client(admin) as client:
        listed = client.get("/v1/admin/keys")

    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert {gateway.key[:9], gateway.other_key[:9], admin[:9]} <= {row["prefix"] for row in rows}
    assert not any(SECRET_FIELDS & set(row) or "key" in row for row in rows)
    for secret in (gateway.key, gateway.other_key, admin):
        assert secret not in listed.text
    assert next(row for row in rows if row["prefix"] == admin[:9])["is_admin"] is True


def test_a_key_made_over_http_is_shown_once_works_takes_new_limits_and_can_be_revoked(
    gateway: Farm, admin: str
) -> None:
    with gateway.client(admin) as client:
        created = client.post("/v1/admin/keys", json={"name": "ci", "max_unfinished": 1})
    assert created.status_code == 201, created.text
    made = created.json()
    new_key, new_id = made["key"], made["id"]
    assert new_key.startswith(made["prefix"]) and made["max_unfinished"] == 1 and made["is_admin"] is False

    with gateway.client(new_key) as client:
        assert client.post(MODEL_PATH, json={"input": {"prompt": "a fox"}}).status_code == 201
        assert client.post(MODEL_PATH, json={"input": {"prompt": "a fox"}}).status_code == 429  # its own cap
        assert client.get("/v1/admin/keys").status_code == 403  # not an admin key
    with gateway.client(admin) as client:
        changed = client.patch(f"/v1/admin/keys/{new_id}", json={"max_unfinished": None, "rate_limit_per_minute": 2})
        listed = client.get("/v1/admin/keys").json()["results"]
    assert changed.status_code == 200, changed.text
    assert (changed.json()["max_unfinished"], changed.json()["rate_limit_per_minute"]) == (None, 2)
    assert new_key not in changed.text and not any("key" in row for row in listed)

    with gateway.client(new_key) as client:
        assert client.post(MODEL_PATH, json={"input": {"prompt": "a fox"}}).status_code == 201  # default cap
        assert client.post(MODEL_PATH, json={"input": {"prompt": "a fox"}}).status_code == 201
        assert client.post(MODEL_PATH, json={"input": {"prompt": "a fox"}}).status_code == 429  # 2 a minute
    with gateway.client(admin) as client:
        revoked = client.post(f"/v1/admin/keys/{new_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    with gateway.client(new_key) as client:
        assert client.get("/v1/predictions").status_code == 401


def test_admin_reads_any_keys_usage_an_ordinary_key_only_its_own(gateway: Farm, admin: str) -> None:
    with gateway.client(gateway.other_key) as client:
        assert client.post(MODEL_PATH, json={"input": {"prompt": "a fox"}}).status_code == 201
        own = client.get("/v1/usage").json()["totals"]["predictions"]
    other_id = key_id(gateway, admin, gateway.other_key)

    with gateway.client(admin) as client:
        usage = client.get(f"/v1/admin/keys/{other_id}/usage", params={"period": "month"})
        admins_own = client.get("/v1/usage").json()["totals"]["predictions"]
    assert usage.status_code == 200, usage.text
    assert usage.json()["totals"]["predictions"] == own >= 1
    assert admins_own == 0  # /v1/usage stays the caller's own, also for an admin


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/v1/admin/keys", {"name": ""}, 422, "name"),
        ("POST", "/v1/admin/keys", {"name": "x", "rate_limit_per_minute": 0}, 422, "rate_limit_per_minute"),
        ("POST", "/v1/admin/keys", {"name": "x", "monthly_spend_cap_usd": -1}, 422, "monthly_spend_cap_usd"),
        ("POST", "/v1/admin/keys", {"name": "x", "key_hash": "0" * 64}, 422, "key_hash"),  # no setting the key
        ("PATCH", "/v1/admin/keys/999999", {"max_unfinished": 3}, 404, None),
        ("POST", "/v1/admin/keys/999999/revoke", None, 404, None),
        ("GET", "/v1/admin/keys/abc/usage", None, 422, "key_id"),
    ],
)
def test_bad_admin_requests_name_the_field_or_the_missing_key(
    gateway: Farm, admin: str, method: str, path: str, body: dict[str, Any] | None, status: int, field: str | None
) -> None:
    with gateway.client(admin) as client:
        answer = client.request(method, path, json=body)

    assert answer.status_code == status, answer.text
    if field is not None:
        assert field in answer.json()["detail"]
    else:
        assert "GET /v1/admin/keys lists them" in answer.json()["detail"]
