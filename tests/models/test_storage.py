"""Storage backends: a local directory and a real S3 HTTP endpoint."""

from pathlib import Path

import httpx
import pytest

from models.storage import LocalStorage, S3Storage, output_key, storage_from_url
from models.url_signing import UrlSigner
from tests.conftest import S3_BUCKET


def test_local_storage_round_trip_and_signed_url(tmp_path: Path) -> None:
    signer = UrlSigner(lambda: b"test-secret", 3600)
    storage = storage_from_url(str(tmp_path / "out"), "http://farm.example/", url_signer=signer)
    assert isinstance(storage, LocalStorage)
    key = output_key("abc", 2, 0, "png")
    storage.put(key, b"png-bytes", "image/png")
    assert storage.get(key) == b"png-bytes"
    url = httpx.URL(storage.url(key))
    assert str(url.copy_with(query=None)) == "http://farm.example/files/outputs/abc/2/0.png"
    signer.check(key, url.params["expires"], url.params["signature"])  # raises when it does not verify
    assert not list((tmp_path / "out").rglob("*.partial"))


def test_local_storage_refuses_keys_that_escape_its_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, "http://farm.example")
    with pytest.raises(ValueError, match="escapes"):
        storage.put("../outside.png", b"x", "image/png")


def test_s3_storage_round_trip_and_presigned_download(s3_endpoint: str) -> None:
    storage = storage_from_url(f"s3://{S3_BUCKET}?endpoint_url={s3_endpoint}", "http://unused")
    assert isinstance(storage, S3Storage)
    storage.ping()
    storage.put("outputs/t/1/0.webp", b"webp-bytes", "image/webp")
    assert storage.get("outputs/t/1/0.webp") == b"webp-bytes"
    response = httpx.get(storage.url("outputs/t/1/0.webp"))
    assert response.status_code == 200
    assert (response.content, response.headers["content-type"]) == (b"webp-bytes", "image/webp")


@pytest.mark.parametrize("url", ["s3://?endpoint_url=http://x", "ftp://host/dir"])
def test_unusable_storage_urls_are_refused_with_the_fix(url: str) -> None:
    with pytest.raises(ValueError, match="FARM_STORAGE_URL"):
        storage_from_url(url, "http://unused")


def test_s3_urls_are_signed_for_the_public_endpoint_when_one_is_set(s3_endpoint: str) -> None:
    storage = storage_from_url(
        f"s3://{S3_BUCKET}?endpoint_url={s3_endpoint}&public_endpoint_url=http://files.example:9000",
        "http://unused",
    )
    storage.put("outputs/p/1/0.png", b"png", "image/png")
    assert storage.url("outputs/p/1/0.png").startswith(f"http://files.example:9000/{S3_BUCKET}/outputs/p/1/0.png?")


def test_s3_urls_expire_after_the_configured_time(s3_endpoint: str) -> None:
    storage = storage_from_url(f"s3://{S3_BUCKET}?endpoint_url={s3_endpoint}", "http://unused", url_seconds=120)
    assert httpx.URL(storage.url("outputs/p/1/0.png")).params["X-Amz-Expires"] == "120"
