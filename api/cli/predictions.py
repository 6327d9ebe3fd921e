"""``farm predict``, ``farm get``, ``farm cancel``: one prediction at a time."""

import json
import mimetypes
import time
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlparse

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.client import (
    DEFAULT_URL,
    ApiKeyOption,
    UrlOption,
    call,
    connect,
    err,
    fail,
    out,
    print_json,
    stream_events,
)
from models.catalog import SD35_MEDIUM
from models.status import TERMINAL, Status

OUTPUT_FORMATS = ("webp", "jpg", "jpeg", "png")
# Only when the stream ends before `done` (a dropped connection): how often to poll instead.
POLL_INTERVAL_S = 1.0

OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Where to save the image (its suffix sets --output-format). With several images: NAME-0.EXT, "
        "NAME-1.EXT, …  Default: <prediction id>.EXT in the current directory.",
        dir_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the prediction as the API returns it.")]


def standing(prediction: dict[str, Any]) -> str:
    """'queued: 2 ahead, about 30 s' while the prediction waits for a worker."""
    ahead, eta = prediction.get("queue_position"), prediction.get("eta_seconds")
    where = "" if ahead is None else ": next in line" if ahead == 0 else f": {ahead} ahead"
    return f"queued{where}" + ("" if eta is None else f", about {eta:.0f} s")


def follow(client: httpx.Client, prediction: dict[str, Any]) -> dict[str, Any]:
    """Show the queue, then a progress bar from the stream; return the prediction once it has ended."""
    prediction_id = prediction["id"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(standing(prediction), total=None)
        for event, data in stream_events(client, prediction_id):
            if event == "status" and data == Status.PROCESSING:
                bar.update(task, description="rendering")
            elif event == "progress":
                step = json.loads(data)
                bar.update(task, description="rendering", completed=step["step"], total=step["total"])
            elif event == "done":
                break
    final: dict[str, Any] = call(client, "GET", f"/v1/predictions/{prediction_id}")
    while final["status"] not in TERMINAL:
        time.sleep(POLL_INTERVAL_S)
        final = call(client, "GET", f"/v1/predictions/{prediction_id}")
    return final


def summary(prediction: dict[str, Any]) -> str:
    metrics = prediction.get("metrics") or {}
    parts = [prediction["status"], f"id {prediction['id']}", f"seed {prediction.get('seed')}"]
    if (predict_time := metrics.get("predict_time")) is not None:
        parts.append(f"time {predict_time:.2f} s")
    if (cost := metrics.get("cost_usd")) is not None:
        parts.append(f"cost ${cost:.6f}")
    if (price := metrics.get("price_usd")) is not None:
        parts.append(f"price ${price:.4f}")
    return "  ".join(parts)


def output_paths(urls: list[str], prediction_id: str, output: Path | None) -> list[Path]:
    """Where each image goes: ``output`` for one image, ``output``-N for several, else the id."""
    suffixes = [PurePosixPath(urlparse(url).path).suffix for url in urls]
    if output is None:
        if len(urls) == 1:
            return [Path(f"{prediction_id}{suffixes[0]}")]
        return [Path(f"{prediction_id}-{n}{suffix}") for n, suffix in enumerate(suffixes)]
    if len(urls) == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{n}{output.suffix or suffix}") for n, suffix in enumerate(suffixes)]


def save_outputs(prediction: dict[str, Any], output: Path | None) -> list[Path]:
    # No Authorization header: output URLs are capability URLs, possibly on another host (S3).
    urls: list[str] = prediction.get("output") or []
    paths = output_paths(urls, prediction["id"], output)
    for url, path in zip(urls, paths, strict=True):
        try:
            response = httpx.get(url, timeout=60, follow_redirects=True)
        except httpx.TransportError as error:
            fail(f"cannot download {url}: {error}")
        if not response.is_success:
            fail(f"cannot download {url}: HTTP {response.status_code}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(response.content)
    return paths


def upload(client: httpx.Client, path: Path) -> str:
    """Upload a local init image; its URL is what the prediction's input names."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    with path.open("rb") as handle:
        uploaded = call(client, "POST", "/v1/files", files={"content": (path.name, handle, content_type)})
    return str(uploaded["urls"]["get"])


def predict(
    prompt: Annotated[str, typer.Argument(help="What the image should show.", show_default=False)],
    api_key: ApiKeyOption,
    url: UrlOption = DEFAULT_URL,
    output: OutputOption = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What the image should not show.")] = None,
    aspect_ratio: Annotated[
        str | None, typer.Option(help="1:1, 16:9, 21:9, 3:2, 2:3, 4:5, 5:4, 3:4, 4:3, 9:16, 9:21.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps, 1-50 (default 40).")] = None,
    cfg: Annotated[float | None, typer.Option(help="Guidance scale, 0-20 (default 5).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: random; the one used is printed).")] = None,
    num_images: Annotated[int | None, typer.Option(help="Images to make, 1-4.")] = None,
    output_format: Annotated[str | None, typer.Option(help="webp (default), jpg or png.")] = None,
    output_quality: Annotated[int | None, typer.Option(help="Quality of webp/jpg, 0-100 (default 90).")] = None,
    image: Annotated[
        str | None, typer.Option(help="Init image for image-to-image: a local file (uploaded first) or a URL.")
    ] = None,
    prompt_strength: Annotated[float | None, typer.Option(help="With --image: how much it changes, 0-1.")] = None,
    model: Annotated[str, typer.Option(help="owner/name of the model.")] = SD35_MEDIUM.ref,
) -> None:
    """Make an image: submit, show the queue and a progress bar, save the images, print seed and cost."""
    inputs: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "aspect_ratio": aspect_ratio,
        "steps": steps,
        "cfg": cfg,
        "seed": seed,
        "num_images": num_images,
        "output_format": output_format,
        "output_quality": output_quality,
        "prompt_strength": prompt_strength,
    }
    inputs = {name: value for name, value in inputs.items() if value is not None}
    suffix = output.suffix.lstrip(".").lower() if output else ""
    if output_format is None and suffix in OUTPUT_FORMATS:
        inputs["output_format"] = suffix
    with connect(url, api_key) as client:
        if image is not None:
            inputs["image"] = upload(client, Path(image)) if Path(image).is_file() else image
        prediction = call(client, "POST", f"/v1/models/{model}/predictions", json={"input": inputs})
        try:
            prediction = follow(client, prediction)
        except KeyboardInterrupt:
            call(client, "POST", f"/v1/predictions/{prediction['id']}/cancel")
            fail(f"interrupted: canceled {prediction['id']}")
    out.print(summary(prediction), highlight=False)
    if prediction["status"] != Status.SUCCEEDED:
        fail(prediction.get("error") or f"the prediction ended {prediction['status']}")
    for path in save_outputs(prediction, output):
        out.print(f"saved {path}", highlight=False)


def get(
    prediction_id: Annotated[str, typer.Argument(help="The prediction's id.", show_default=False)],
    api_key: ApiKeyOption,
    url: UrlOption = DEFAULT_URL,
    as_json: JsonOption = False,
) -> None:
    """Show a prediction: status, seed, metrics, output URLs (or everything with --json)."""
    with connect(url, api_key) as client:
        prediction = call(client, "GET", f"/v1/predictions/{prediction_id}")
    if as_json:
        print_json(prediction)
        return
    out.print(summary(prediction), highlight=False)
    if prediction["status"] == Status.STARTING:
        out.print(standing(prediction), highlight=False)
    if progress := prediction.get("progress"):
        out.print(f"step {progress['step']}/{progress['total']}", highlight=False)
    for output_url in prediction.get("output") or []:
        out.print(output_url, highlight=False, soft_wrap=True)
    if prediction.get("error"):
        out.print(f"error: {prediction['error']}", highlight=False)


def cancel(
    prediction_id: Annotated[str, typer.Argument(help="The prediction's id.", show_default=False)],
    api_key: ApiKeyOption,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Cancel a prediction: a queued one never starts, a running one stops at its next step."""
    with connect(url, api_key) as client:
        prediction = call(client, "POST", f"/v1/predictions/{prediction_id}/cancel")
    status = prediction["status"]
    if status == Status.CANCELED:
        out.print(f"{prediction_id} canceled", highlight=False)
    elif status in TERMINAL:
        out.print(f"{prediction_id} had already ended: {status}", highlight=False)
    else:
        out.print(f"{prediction_id} cancel requested: it stops at its next step", highlight=False)
