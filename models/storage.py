"""Where files live (outputs, init images, uploads): a local directory served by the gateway, or any
S3-compatible store.

``FARM_STORAGE_URL`` picks the backend: a path (``var/outputs``, ``file:///srv/out``) or
``s3://bucket?endpoint_url=http://minio:9000&region=us-east-1&public_endpoint_url=https://s3.example``
(the last only when clients reach the store at another address). Credentials for S3 come from the
usual AWS environment variables, never from the URL.
"""

from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import boto3

# Output URLs stay valid this long (S3 presigned URLs).
URL_EXPIRY_SECONDS = 3600
CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def url(self, key: str) -> str:
        """A URL a client can download ``key`` from."""
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
    """Files under a directory; the gateway serves them at ``{public_url}/files/{key}``."""

    def __init__(self, root: Path, public_url: str) -> None:
        self.root = root.resolve()
        self.public_url = public_url.rstrip("/")

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
        return f"{self.public_url}/files/{quote(key)}"

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


class S3Storage:
    """A bucket in any S3-compatible store; clients get presigned URLs.

    ``signer`` presigns with the endpoint clients can reach, which may differ from the one the
    farm uses inside its network (``http://minio:9000`` in compose).
    """

    def __init__(self, bucket: str, client: Any, signer: Any | None = None) -> None:
        self.bucket = bucket
        self.client = client
        self.signer = signer or client

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def url(self, key: str) -> str:
        url: str = self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=URL_EXPIRY_SECONDS
        )
        return url

    def ping(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


def storage_from_url(storage_url: str, public_url: str) -> Storage:
    """The backend ``storage_url`` names."""
    parts = urlsplit(storage_url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"FARM_STORAGE_URL {storage_url!r} has no bucket: use s3://BUCKET?endpoint_url=…")
        options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        region = options.get("region", "us-east-1")
        client = boto3.client("s3", endpoint_url=options.get("endpoint_url"), region_name=region)
        signer = None
        if "public_endpoint_url" in options:
            signer = boto3.client("s3", endpoint_url=options["public_endpoint_url"], region_name=region)
        return S3Storage(parts.netloc, client, signer)
    if parts.scheme in ("", "file"):
        return LocalStorage(Path(parts.path if parts.scheme == "file" else storage_url), public_url)
    raise ValueError(f"FARM_STORAGE_URL {storage_url!r}: use a directory path or s3://BUCKET?endpoint_url=…")
