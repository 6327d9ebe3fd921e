"""A running prediction seen from outside: progress, the SSE stream, cancel and Cancel-After."""

import json
import time

from tests.e2e.test_quick_start import create
from tests.farm import Farm

# Several seconds of tiny-pipeline work on this machine: long enough to act on while it runs.
LONG = {"prompt": "a slow one", "width": 1536, "height": 1536, "steps": 50, "num_images": 4}


def read_events(farm: Farm, prediction_id: str) -> list[tuple[str, str]]:
    events, name = [], ""
    with farm.client() as client, client.stream("GET", f"/v1/predictions/{prediction_id}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, line.removeprefix("data: ")))
    return events


def test_stream_sends_status_progress_logs_output_then_done(farm: Farm) -> None:
    created = create(farm, {"prompt": "a fox", "width": 512, "height": 512, "steps": 30, "output_format": "png"})
    events = read_events(farm, str(created["id"]))
    names = [name for name, _ in events]
    assert names[-1] == "done" and json.loads(events[-1][1]) == {}
    statuses = [data for name, data in events if name == "status"]
    assert statuses[-1] == "succeeded"
    steps = [json.loads(data)["step"] for name, data in events if name == "progress"]
    assert steps == sorted(steps) and steps[-1] == 30
    assert any("30/30" in data for name, data in events if name == "logs")
    outputs = [data for name, data in events if name == "output"]
    assert len(outputs) == 1 and outputs[0].partition("?")[0].endswith(".png")  # before the signed URL's query
    assert names.index("output") > max(i for i, name in enumerate(names) if name == "status")


def test_progress_is_reported_while_running_and_in_logs(farm: Farm) -> None:
    created = create(farm, {**LONG, "num_images": 1})
    prediction_id = str(created["id"])
    deadline = time.monotonic() + 60
    with farm.client() as client:
        while time.monotonic() < deadline:
            body = client.get(f"/v1/predictions/{prediction_id}").json()
            if body["status"] != "starting" and body.get("progress", {}).get("step", 0) > 0:
                break
    assert body["status"] in ("processing", "succeeded")
    assert body["progress"]["total"] == 50 and 0 < body["progress"]["percent"] <= 100
    done = farm.wait(prediction_id)
    assert done["progress"] == {"step": 50, "total": 50, "percent": 100.0}
    assert "50/50" in str(done["logs"]) and "Safety checker: none configured" in str(done["logs"])
    assert done["has_nsfw_concepts"] is None


def test_cancel_running_prediction_stops_it_without_output(farm: Farm) -> None:
    created = create(farm, LONG)
    prediction_id = str(created["id"])
    farm.wait(prediction_id, statuses=("processing",))
    with farm.client() as client:
        assert client.post(f"/v1/predictions/{prediction_id}/cancel").status_code == 200
    done = farm.wait(prediction_id)
    assert done["status"] == "canceled"
    assert done["output"] is None
    assert done["progress"]["step"] < 50
    # The worker takes the next job.
    after = farm.wait(str(create(farm, {"prompt": "next", "width": 256, "height": 256, "steps": 2})["id"]))
    assert after["status"] == "succeeded"


def test_cancel_after_cancels_running_and_queued_predictions(farm: Farm) -> None:
    # The queued prediction's deadline (5 s) passes while the running one (8 s) still holds the worker.
    with farm.client() as client:
        running = client.post(
            "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions",
            json={"input": LONG},
            headers={"Cancel-After": "8s"},
        ).json()
        farm.wait(running["id"], statuses=("processing",))
        queued = client.post(
            "/v1/models/stability-ai/stable-diffusion-3.5-medium/predictions",
            json={"input": {"prompt": "waits", "width": 256, "height": 256, "steps": 2}},
            headers={"Cancel-After": "5"},
        ).json()
        standing = client.get(f"/v1/predictions/{queued['id']}").json()
    assert running["deadline"] and queued["deadline"]
    assert standing["status"] == "starting" and standing["queue_position"] == 0
    assert standing["eta_seconds"] is None or standing["eta_seconds"] > 0

    running_done, queued_done = farm.wait(running["id"]), farm.wait(queued["id"])
    assert (running_done["status"], running_done["output"]) == ("canceled", None)
    assert queued_done["status"] == "canceled"
    assert queued_done["started_at"] is None
    assert "Cancel-After" in str(queued_done["error"])
