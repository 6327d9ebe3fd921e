"""Bodies past FARM_MAX_REQUEST_BYTES are refused with 413 before they are read, declared or chunked."""

from collections.abc import Iterator

import httpx
import pytest

from tests.farm import Farm, extra_gateway

LIMIT = 100_000
MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"


@pytest.fixture(scope="module")
def small_gateway(gateway: Farm) -> Iterator[Farm]:
    with extra_gateway(gateway, {"FARM_MAX_REQUEST_BYTES": str(LIMIT)}, "gateway-small-bodies") as running:
        yield running


def test_a_declared_length_over_the_limit_is_refused_unread(small_gateway: Farm) -> None:
    with small_gateway.client() as client:
        response = client.post(MODEL_PATH, content=b"x" * (LIMIT + 1), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert f"{LIMIT:,} bytes" in response.json()["detail"]


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(small_gateway: Farm) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"input": {"prompt": "'
        for _ in range(10_000):  # 100 MB if read to the end: more than socket buffers can swallow
            sent += 10_000
            yield b"y" * 10_000
        yield b'"}}'

    status = None
    with small_gateway.client() as client:
        try:
            response = client.post(MODEL_PATH, content=chunks(), headers={"Content-Type": "application/json"})
            status = response.status_code
        except httpx.WriteError:
            pass  # the server answered and closed while the client still sent
    assert status in (413, None)
    assert sent < 100_000_000  # the server stopped reading and closed the connection


def test_a_body_under_the_limit_goes_through(small_gateway: Farm) -> None:
    with small_gateway.client() as client:
        response = client.post(MODEL_PATH, json={"input": {"prompt": "a fox"}})
    assert response.status_code == 201
