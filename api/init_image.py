"""The init image of an image-to-image prediction, resolved by the gateway before anything is stored.

Workers never fetch customer URLs: the gateway reads the image (a data URI, a file on this farm, or
an http(s) URL through the SSRF guard), checks it by its content, and stores it as PNG under
``inputs/{prediction_id}/image.png`` for the worker.
"""

import base64
import binascii
import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, unquote_to_bytes

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy.orm import Session

from api.errors import InputError
from api.presenter import file_url
from models.ids import new_file_id
from models.inputs import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from models.net_guard import FetchError, NetGuard
from models.settings import Settings
from models.storage import LocalStorage, Storage, init_image_key
from models.tables import ApiKey, File
from models.url_signing import UrlRejected

FIELD = "input.image"
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
# Longest base64 payload that can still decode to MAX_IMAGE_BYTES; checked before decoding anything.
MAX_BASE64_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
# The worker never renders more than 1536 px a side: bigger init images are stored scaled down.
STORED_MAX_SIDE = 2048
FILE_ID = re.compile(r"[a-z0-9]{1,32}")
MAX_SHOWN_CHARS = 200


@dataclass(frozen=True)
class InitImage:
    storage_key: str  # the normalized PNG the worker reads
    input_value: str  # what the prediction's input.image records


def shortened(value: Any) -> Any:
    """``value`` with long strings cut, so an error never echoes a 50 MB data URI back."""
    if isinstance(value, str) and len(value) > MAX_SHOWN_CHARS:
        return f"{value[:60]}… ({len(value):,} characters)"
    if isinstance(value, dict):
        return {name: shortened(item) for name, item in value.items()}
    if isinstance(value, list):
        return [shortened(item) for item in value]
    return value


def invalid(message: str, source: str) -> InputError:
    return InputError.field(FIELD, message, shortened(source))


def attach_init_image(
    session: Session, *, key: ApiKey, prediction_id: str, source: str, settings: Settings, storage: Storage
) -> InitImage:
    """Read, check and store the init image named by ``source``; raises InputError (422) when unusable.

    A data URI is recorded as a file of the caller's (``input.image`` becomes its farm URL, so reading
    the prediction never returns the payload); a URL is recorded as sent.
    """
    image = normalized(read_source(source, key=key, session=session, settings=settings, storage=storage), source)
    png = io.BytesIO()
    image.save(png, "PNG", compress_level=3)
    storage_key = init_image_key(prediction_id)
    storage.put(storage_key, png.getvalue(), "image/png")
    if not source.startswith("data:"):
        return InitImage(storage_key, source)
    file = File(
        id=new_file_id(),
        api_key_id=key.id,
        name="image.png",
        content_type="image/png",
        size=len(png.getvalue()),
        sha256=hashlib.sha256(png.getvalue()).hexdigest(),
        storage_key=storage_key,
        file_metadata={"prediction_id": prediction_id},
    )
    session.add(file)
    return InitImage(storage_key, file_url(settings.public_url, file.id))


def read_source(source: str, *, key: ApiKey, session: Session, settings: Settings, storage: Storage) -> bytes:
    """The bytes ``source`` names: a data URI, a farm file or output, or a URL fetched through the guard."""
    if source.startswith("data:"):
        return decode_data_uri(source)
    public = settings.public_url.rstrip("/")
    if source.startswith(f"{public}/v1/files/"):
        file_id = source.removeprefix(f"{public}/v1/files/").rstrip("/")
        file = session.get(File, file_id) if FILE_ID.fullmatch(file_id) else None
        if file is None or file.api_key_id != key.id:
            raise invalid("no file of yours has this URL: upload with POST /v1/files and use its urls.get", source)
        return storage.get(file.storage_key)
    if source.startswith(f"{public}/files/") and isinstance(storage, LocalStorage):
        return read_output_url(source.removeprefix(f"{public}/files/"), source, storage)
    if not source.startswith(("http://", "https://")):
        raise invalid(
            "give an https URL, a data URI (data:image/png;base64,…) or a file URL from POST /v1/files", source
        )
    try:
        return NetGuard.from_setting(settings.allowed_networks).fetch(source, max_bytes=MAX_IMAGE_BYTES)
    except FetchError as error:
        raise invalid(f"could not be used: {error}", source) from None


def read_output_url(rest: str, source: str, storage: LocalStorage) -> bytes:
    """A previous prediction's output on this farm, read from storage rather than over the network; its URL
    must be signed and unexpired, as when it is downloaded (so a guessed key reads nothing)."""
    path, _, query = rest.partition("?")
    key, params = unquote(path), {name: values[-1] for name, values in parse_qs(query).items()}
    if storage.signer is None:
        raise invalid("no file on this farm has this URL", source)
    try:
        storage.signer.check(key, params.get("expires"), params.get("signature"))
        return storage.get(key)
    except UrlRejected as rejected:
        raise invalid(str(rejected), source) from None
    except (OSError, ValueError):
        raise invalid("no file on this farm has this URL", source) from None


def decode_data_uri(source: str) -> bytes:
    header, comma, payload = source.partition(",")
    if not comma:
        raise invalid("a data URI needs a comma before its data: data:image/png;base64,…", source)
    if header.lower().endswith(";base64"):
        if len(payload) > MAX_BASE64_CHARS:
            raise invalid(f"the image is larger than {MAX_IMAGE_BYTES // 2**20} MB: send a smaller one", source)
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except binascii.Error:
            raise invalid("the data URI is not valid base64", source) from None
    else:
        if len(payload) > 3 * MAX_IMAGE_BYTES:  # percent-encoding at most triples the size
            raise invalid(f"the image is larger than {MAX_IMAGE_BYTES // 2**20} MB: send a smaller one", source)
        data = unquote_to_bytes(payload)
    if len(data) > MAX_IMAGE_BYTES:
        raise invalid(f"the image is larger than {MAX_IMAGE_BYTES // 2**20} MB: send a smaller one", source)
    return data


def normalized(data: bytes, source: str) -> Image.Image:
    """The image in ``data`` upright (EXIF orientation applied), RGB, at most STORED_MAX_SIDE a side.

    Judged by content: the format PIL finds, never the name, extension or declared type.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:  # reads the header only
            if opened.format not in ACCEPTED_FORMATS:
                raise invalid(f"this is a {opened.format} image; send a JPEG, PNG or WebP image", source)
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS:
                raise invalid(pixels_message(width, height), source)
            image = ImageOps.exif_transpose(opened)  # decodes the pixels
    except Image.DecompressionBombError:
        raise invalid(pixels_message(None, None), source) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise invalid("this is not a readable image; send a JPEG, PNG or WebP image", source) from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, not whatever colour they happen to hold.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    image = image.convert("RGB")
    image.thumbnail((STORED_MAX_SIDE, STORED_MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def pixels_message(width: int | None, height: int | None) -> str:
    size = "" if width is None or height is None else f" ({width}x{height})"
    return f"the image has too many pixels{size}: at most {MAX_IMAGE_PIXELS // 10**6} megapixels"
