"""Where files live (outputs, init images, uploads): a local directory served by the gateway, or any
S3-compatible store.

``FARM_STORAGE_URL`` picks the backend: a path (``var/outputs``, ``file:///srv/out``) or
``s3://bucket?endpoint_url=http://minio:9000&region=us-east-1&public_endpoint_url=https://s3.example``
(the last only when clients reach the store at another address). Credentials for S3 come from the
usual AWS environment variables, never from the URL.

Clients get URLs that expire (``FARM_OUTPUT_URL_SECONDS``): presigned by S3 (the bucket stays private), or
signed by the farm for the local directory (``models.url_signing``).
"""

from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import boto3
from botocore.config import Config

from models.settings import Settings
from models.url_signing import UrlSigner, url_signing_secret

# How long a URL handed to a client stays valid unless FARM_OUTPUT_URL_SECONDS says otherwise.
DEFAULT_URL_SECONDS = 3600
CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def url(self, key: str) -> str:
        """A URL a client can download ``key`` from, for a limited time."""
        ...

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
        ...


def output_key(prediction_id: str, attempt: int, index: int, extension: str) -> str:
    """Attempt-scoped key: a losing attempt's files never collide with the winner's."""
    return f"outputs/{prediction_id}/{attempt}/{index}.{extension}"


def init_image_key(prediction_id: str) -> str:
    """The img2img init image, normalized to PNG by the gateway; the worker reads it from here."""
    return f"inputs/{prediction_id}/image.png"


def upload_key(file_id: str, filename: str) -> str:
    """An uploaded file; ``filename`` must already be reduced to a safe name."""
    return f"uploads/{file_id}/{filename}"


class LocalStorage:
    """Files under a directory; the gateway serves them at ``{public_url}/files/{key}?expires=…&signature=…``.

    ``signer`` is None in processes that never hand out URLs (tests of the files alone).
    """

    def __init__(self, root: Path, public_url: str, signer: UrlSigner | None = None) -> None:
        self.root = root.resolve()
        self.public_url = public_url.rstrip("/")
        self.signer = signer

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:  # noqa: ARG002
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        partial.replace(path)  # readers never see half a file

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def url(self, key: str) -> str:
        if self.signer is None:
            raise RuntimeError("this LocalStorage has no URL signer: build it with storage_from_settings")
        return f"{self.public_url}/files/{quote(key)}?{self.signer.query(key)}"

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


class S3Storage:
    """A bucket in any S3-compatible store; clients get presigned URLs.

    ``signer`` presigns with the endpoint clients can reach, which may differ from the one the
    farm uses inside its network (``http://minio:9000`` in compose).
    """

    def __init__(
        self, bucket: str, client: Any, signer: Any | None = None, url_seconds: int = DEFAULT_URL_SECONDS
    ) -> None:
        self.bucket = bucket
        self.client = client
        self.signer = signer or client
        self.url_seconds = url_seconds

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def url(self, key: str) -> str:
        url: str = self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_seconds
        )
        return url

    def ping(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


def storage_from_settings(settings: Settings) -> Storage:
    """The farm's storage as every process builds it, once per process: URLs valid FARM_OUTPUT_URL_SECONDS,
    local ones signed with the farm's shared secret (read from Postgres at the first URL, so workers never
    read it)."""
    return _configured_storage(
        settings.storage_url,
        settings.public_url,
        settings.database_url,
        settings.output_url_seconds,
        settings.output_url_secret,
    )


@lru_cache  # keyed by the settings it reads (Settings objects are not hashable)
def _configured_storage(
    storage_url: str, public_url: str, database_url: str, url_seconds: int, url_secret: str
) -> Storage:
    signer = UrlSigner(partial(url_signing_secret, database_url, url_secret), url_seconds)
    return storage_from_url(storage_url, public_url, url_seconds=url_seconds, url_signer=signer)


def storage_from_url(
    storage_url: str, public_url: str, *, url_seconds: int = DEFAULT_URL_SECONDS, url_signer: UrlSigner | None = None
) -> Storage:
    """The backend ``storage_url`` names; ``url_signer`` signs local-directory URLs."""
    parts = urlsplit(storage_url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"FARM_STORAGE_URL {storage_url!r} has no bucket: use s3://BUCKET?endpoint_url=…")
        options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        region = options.get("region", "us-east-1")
        # SigV4 presigned URLs carry their lifetime (X-Amz-Expires, at most 7 days); boto3 would presign with
        # the deprecated SigV2 in us-east-1.
        config = Config(signature_version="s3v4")
        client = boto3.client("s3", endpoint_url=options.get("endpoint_url"), region_name=region, config=config)
        signer = None
        if "public_endpoint_url" in options:
            signer = boto3.client("s3", endpoint_url=options["public_endpoint_url"], region_name=region, config=config)
        return S3Storage(parts.netloc, client, signer, url_seconds)
    if parts.scheme in ("", "file"):
        return LocalStorage(Path(parts.path if parts.scheme == "file" else storage_url), public_url, url_signer)
    raise ValueError(f"FARM_STORAGE_URL {storage_url!r}: use a directory path or s3://BUCKET?endpoint_url=…")
