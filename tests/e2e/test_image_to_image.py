"""Image-to-image through HTTP only: init images from a data URI, an upload and an https URL, checked by
content at the gateway, stored once, rendered by the worker; and every rejection a clear 422 that stores
nothing."""

import base64
import dataclasses
import hashlib
import io
import ssl
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import replicate
import trustme
from PIL import Image

from api.init_image import MAX_BASE64_CHARS
from models.inputs import MAX_IMAGE_BYTES
from tests.farm import BIN, Farm, spawn, stop, wait_healthy
from tests.http_servers import RecordingServer, Reply, recording_server
from tests.services import free_port

MODEL_PATH = "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions"
FAST = {"prompt": "a red fox", "steps": 2, "prompt_strength": 1.0, "output_format": "png"}


def png(size: tuple[int, int], color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def exif_rotated_jpeg() -> bytes:
    """300x200 pixels stored landscape, with EXIF orientation 6: upright it is 200x300 (portrait)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    Image.new("RGB", (300, 200), "blue").save(out, "JPEG", exif=exif)
    return out.getvalue()


def gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(out, "GIF")
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A few dozen bytes whose header declares width x height pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def create(farm: Farm, inputs: dict[str, Any]) -> httpx.Response:
    with farm.client() as client:
        return client.post(MODEL_PATH, json={"input": inputs})


def run(farm: Farm, inputs: dict[str, Any]) -> dict[str, Any]:
    response = create(farm, inputs)
    assert response.status_code == 201, response.text
    done = farm.wait(response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    return done


def output_image(done: dict[str, Any]) -> Image.Image:
    response = httpx.get(done["output"][0], timeout=30)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


def upload(farm: Farm, content: bytes, filename: str, content_type: str, key: str | None = None) -> dict[str, Any]:
    with farm.client(key) as client:
        response = client.post("/v1/files", files={"content": (filename, content, content_type)})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def image_host(ca: trustme.CA) -> Iterator[RecordingServer]:
    """An https image server on loopback with a certificate for `localhost` from the test CA."""
    with recording_server({"/fox.jpg": Reply(exif_rotated_jpeg())}, tls=ca, hostnames=("localhost",)) as server:
        yield server


@pytest.fixture(scope="module")
def allowing_gateway(farm: Farm, ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    """A second gateway in front of `farm`'s job store and worker that may fetch from loopback
    (FARM_ALLOWED_NETWORKS) and trusts the test CA (SSL_CERT_FILE)."""
    ca_file = tmp_path_factory.mktemp("image-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**farm.env, "FARM_PUBLIC_URL": url, "FARM_ALLOWED_NETWORKS": "127.0.0.0/8", "SSL_CERT_FILE": str(ca_file)}
    argv = [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn("gateway-allowing-loopback", argv, env, farm.logs)
    try:
        wait_healthy(url, process)
        yield dataclasses.replace(farm, url=url, env=env, processes={"gateway": process})
    finally:
        stop(process)


# --- image-to-image that succeeds ---------------------------------------------------------------------


def test_a_data_uri_init_image_sets_the_aspect_and_is_kept_as_a_farm_file(farm: Farm) -> None:
    source = png((300, 200))
    done = run(farm, {**FAST, "image": data_uri(source), "steps": 4, "prompt_strength": 0.5})

    assert output_image(done).size == (1280, 832)  # 3:2 near one megapixel, sides multiples of 64
    assert "2/2" in done["logs"]  # 4 steps at strength 0.5 run 2
    # The payload is not echoed back: input.image names the stored file, which only its owner can read.
    file_url = done["input"]["image"]
    assert file_url.startswith(f"{farm.url}/v1/files/")
    with farm.client() as client:
        file = client.get(file_url).json()
        stored = client.get(f"{file_url}/download")
    assert (file["content_type"], file["metadata"]) == ("image/png", {"prediction_id": done["id"]})
    assert Image.open(io.BytesIO(stored.content)).size == (300, 200)
    with farm.client(farm.other_key) as client:
        assert client.get(file_url).status_code == 404


def test_width_and_height_win_over_the_init_image_aspect(farm: Farm) -> None:
    done = run(farm, {**FAST, "image": data_uri(png((300, 200))), "width": 256, "height": 384})
    assert output_image(done).size == (256, 384)


def test_an_output_of_this_farm_is_an_init_image_read_from_storage(farm: Farm) -> None:
    first = run(farm, {**FAST, "width": 256, "height": 384})
    # The farm's public URL is loopback here: it works because it is read from storage, not fetched.
    second = run(farm, {**FAST, "image": first["output"][0]})
    assert second["input"]["image"] == first["output"][0]
    assert output_image(second).size == (832, 1280)


def test_an_exif_rotated_jpeg_renders_upright_as_a_portrait(farm: Farm) -> None:
    done = run(farm, {**FAST, "image": data_uri(exif_rotated_jpeg(), "image/jpeg")})
    assert output_image(done).size == (832, 1280)


def test_a_file_uploaded_with_replicates_client_is_an_init_image(farm: Farm) -> None:
    client = replicate.Client(api_token=farm.key, base_url=farm.url)
    file = client.files.create(io.BytesIO(png((200, 200), "white")), filename="square.png", metadata={"a": 1})

    assert (file.name, file.content_type, file.size, file.metadata) == ("square.png", "image/png", file.size, {"a": 1})
    assert file.urls["get"] == f"{farm.url}/v1/files/{file.id}"
    assert file.checksums["sha256"] == file.etag and len(file.etag) == 64
    assert client.files.get(file.id).id == file.id

    done = run(farm, {**FAST, "image": file.urls["get"]})
    assert done["input"]["image"] == file.urls["get"]
    assert output_image(done).size == (1024, 1024)

    # Given a file object as input, the client uploads it and sends its urls.get.
    created = client.predictions.create(
        model="stability-ai/stable-diffusion-3.5-medium", input={**FAST, "image": io.BytesIO(png((400, 100)))}
    )
    done = farm.wait(created.id)
    assert done["input"]["image"].startswith(f"{farm.url}/v1/files/")
    assert output_image(done).size == (1536, 384)  # 4:1 kept by shrinking below a megapixel


def test_an_https_url_is_fetched_once_by_the_gateway_with_tls_on_the_hostname(
    allowing_gateway: Farm, image_host: RecordingServer
) -> None:
    url = f"https://localhost:{image_host.port}/fox.jpg"
    done = run(allowing_gateway, {**FAST, "image": url})

    assert done["input"]["image"] == url  # kept as sent
    assert output_image(done).size == (832, 1280)  # EXIF applied to fetched images too
    assert [(seen.path, seen.host) for seen in image_host.requests] == [("/fox.jpg", f"localhost:{image_host.port}")]
    assert image_host.sni == ["localhost"]


# --- rejections ----------------------------------------------------------------------------------------


def stored_state(farm: Farm) -> tuple[int, int, set[str]]:
    """Rows and files a request could have left behind."""
    url = farm.env["FARM_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        predictions = connection.execute("SELECT count(*) FROM predictions").fetchone()
        files = connection.execute("SELECT count(*) FROM files").fetchone()
    assert predictions is not None and files is not None
    root = Path(farm.env["FARM_STORAGE_URL"])
    return int(predictions[0]), int(files[0]), {str(path) for path in root.rglob("*") if path.is_file()}


def text_upload_named_png(farm: Farm) -> str:
    return str(upload(farm, b"this is not an image", "notes.png", "image/png")["urls"]["get"])


def other_keys_upload(farm: Farm) -> str:
    return str(upload(farm, png((64, 64)), "theirs.png", "image/png", key=farm.other_key)["urls"]["get"])


REJECTED: list[Any] = [
    pytest.param(lambda _: data_uri(gif(), "image/png"), "GIF image", id="gif-labelled-png"),
    pytest.param(text_upload_named_png, "not a readable image", id="text-file-named-png"),
    pytest.param(
        lambda _: "data:image/png;base64," + "A" * (MAX_BASE64_CHARS + 4), "larger than 50 MB", id="data-uri-over-50MB"
    ),
    pytest.param(lambda _: data_uri(png_declaring(20_000, 20_000)), "too many pixels", id="bomb-400MP"),
    pytest.param(lambda _: data_uri(png_declaring(8_000, 8_000)), "too many pixels (8000x8000)", id="bomb-64MP"),
    pytest.param(lambda _: "data:image/png;base64,@@@", "not valid base64", id="bad-base64"),
    pytest.param(lambda _: "ftp://example.com/fox.png", "give an https URL", id="ftp"),
    pytest.param(lambda _: "/etc/passwd", "give an https URL", id="path"),
    pytest.param(lambda _: "http://169.254.169.254/latest/meta-data/", "metadata", id="metadata-ip"),
    pytest.param(lambda _: "http://[::ffff:10.0.0.1]/x.png", "private", id="mapped-private"),
    pytest.param(lambda f: f"{f.url}/v1/files/nosuchfile", "no file of yours", id="unknown-file"),
    pytest.param(other_keys_upload, "no file of yours", id="another-keys-file"),
]


@pytest.mark.parametrize(("make_source", "says"), REJECTED)
def test_an_unusable_image_is_a_422_naming_input_image_and_stores_nothing(
    gateway: Farm, make_source: Callable[[Farm], str], says: str
) -> None:
    source = make_source(gateway)
    before = stored_state(gateway)

    response = create(gateway, {"prompt": "x", "image": source})

    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["field"] for error in body["errors"]] == ["input.image"]
    assert says in body["detail"]
    assert len(response.content) < 5_000  # never echoes a big payload
    assert stored_state(gateway) == before


def test_a_loopback_url_is_refused_without_the_allow_list(gateway: Farm) -> None:
    with recording_server({"/fox.png": Reply(png((64, 64)))}) as server:
        before = stored_state(gateway)
        response = create(gateway, {"prompt": "x", "image": f"http://localhost:{server.port}/fox.png"})
    assert response.status_code == 422
    assert "input.image" in response.json()["detail"] and "loopback" in response.json()["detail"]
    assert "FARM_ALLOWED_NETWORKS" in response.json()["detail"]
    assert server.requests == []
    assert stored_state(gateway) == before


@pytest.mark.parametrize("strength", [-0.1, 1.5, "lots"])
def test_prompt_strength_out_of_range_is_a_422_checked_before_the_image(gateway: Farm, strength: object) -> None:
    with recording_server({"/fox.png": Reply(png((64, 64)))}) as server:
        before = stored_state(gateway)
        response = create(gateway, {"prompt": "x", "image": f"{server.url}/fox.png", "prompt_strength": strength})
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["input.prompt_strength"]
    assert server.requests == []
    assert stored_state(gateway) == before


def test_a_model_level_error_does_not_echo_a_big_data_uri(gateway: Farm) -> None:
    response = create(gateway, {"prompt": "x", "width": 512, "image": data_uri(png((1500, 1500)))})
    assert response.status_code == 422
    assert "set both" in response.json()["detail"]
    assert len(response.content) < 5_000


# --- uploads -------------------------------------------------------------------------------------------


def test_an_upload_is_visible_to_its_key_only(gateway: Farm) -> None:
    content = b"\x00\x01 any bytes"
    file = upload(gateway, content, "../../etc/notes.bin", "application/octet-stream")
    assert (file["name"], file["size"], file["checksums"]["sha256"]) == (
        "../../etc/notes.bin",
        len(content),
        hashlib.sha256(content).hexdigest(),
    )
    assert set(file) == {
        "id",
        "name",
        "content_type",
        "size",
        "etag",
        "checksums",
        "metadata",
        "created_at",
        "expires_at",
        "urls",
    }
    with gateway.client() as client:
        assert client.get(f"/v1/files/{file['id']}").json() == file
        downloaded = client.get(f"/v1/files/{file['id']}/download")
        assert downloaded.content == content
        assert downloaded.headers["content-disposition"] == "attachment"
    with gateway.client(gateway.other_key) as client:
        assert client.get(f"/v1/files/{file['id']}").status_code == 404
        assert client.get(f"/v1/files/{file['id']}/download").status_code == 404
    root = Path(gateway.env["FARM_STORAGE_URL"])
    assert [path.name for path in (root / "uploads" / file["id"]).iterdir()] == ["notes.bin"]


def test_an_upload_also_takes_the_field_name_file(gateway: Farm) -> None:
    with gateway.client() as client:
        response = client.post("/v1/files", files={"file": ("a.png", png((8, 8)), "image/png")})
        missing = client.post("/v1/files", files={"attachment": ("a.png", png((8, 8)), "image/png")})
        bad_metadata = client.post(
            "/v1/files", files={"content": ("a.png", b"x", "image/png")}, data={"metadata": "[1, 2]"}
        )
    assert response.status_code == 201 and response.json()["content_type"] == "image/png"
    assert missing.status_code == 422 and "'content'" in missing.json()["detail"]
    assert bad_metadata.status_code == 422 and "metadata" in bad_metadata.json()["detail"]


def test_an_oversize_upload_is_refused_from_its_declared_length(gateway: Farm) -> None:
    before = stored_state(gateway)
    with gateway.client() as client:
        response = client.post("/v1/files", files={"content": ("big.png", b"\0" * (MAX_IMAGE_BYTES + 1), "image/png")})
    assert response.status_code == 413
    assert "larger than 50 MB" in response.json()["detail"]
    assert stored_state(gateway) == before


def test_an_oversize_chunked_upload_is_cut_off_mid_stream(gateway: Farm) -> None:
    boundary = "farmtestboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:  # no Content-Length: the gateway only learns the size by counting
        yield head
        for _ in range(MAX_IMAGE_BYTES // 2**20 + 2):
            yield b"\0" * 2**20
        yield f"\r\n--{boundary}--\r\n".encode()

    before = stored_state(gateway)
    with gateway.client() as client:
        response = client.post(
            "/v1/files", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
    assert response.status_code == 413
    assert "larger than 50 MB" in response.json()["detail"]
    assert stored_state(gateway) == before


def test_the_test_ca_is_not_trusted_without_ssl_cert_file(ca: trustme.CA) -> None:
    """Sanity check of the fixture: the test CA is not trusted by default, so the https test above
    passes only because the gateway was given SSL_CERT_FILE."""
    with recording_server({"/": Reply(b"x")}, tls=ca) as server:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://localhost:{server.port}/", verify=ssl.create_default_context())
