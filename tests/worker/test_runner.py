"""The runner on real Postgres, local storage and the real tiny pipeline."""

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from sqlalchemy import text

from models import lifecycle
from models.catalog import SD35_MEDIUM
from models.db import session_scope
from models.ids import new_prediction_id
from models.inputs import RenderRequest, SD35Input
from models.keys import find_active_key
from models.settings import Settings
from models.status import Status
from models.storage import LocalStorage, init_image_key
from models.tables import Prediction
from tests.worker.test_safety import save_tiny_safety_checker
from worker.pipelines import Predictor, load_predictor
from worker.runner import BATCHED, NO_SAFETY_CHECKER, SAFETY_CHECKER_DISABLED, run_prediction
from worker.safety import SafetyChecker, load_safety_checker

SMALL = {"prompt": "a red fox", "width": 256, "height": 256, "steps": 4, "output_format": "png"}


@pytest.fixture(scope="module")
def tiny() -> Predictor:
    return load_predictor("tiny", "")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        storage_url=str(tmp_path),
        public_url="http://farm.test",
        heartbeat_seconds=0,
    )


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(Path(settings.storage_url), settings.public_url)


@pytest.fixture
def new_prediction(database_url: str, api_key: str) -> Callable[[dict[str, object]], str]:
    def create(inputs: dict[str, object]) -> str:
        with session_scope(database_url) as session:
            key = find_active_key(session, api_key)
            assert key is not None
            return lifecycle.create_prediction(
                session,
                lifecycle.NewPrediction(api_key_id=key.id, spec=SD35_MEDIUM, inputs=inputs, seed=5, max_attempts=3),
            ).id

    return create


def row(database_url: str, prediction_id: str) -> Prediction:
    with session_scope(database_url) as session:
        prediction = session.get(Prediction, prediction_id)
        assert prediction is not None
        return prediction


def test_success_records_outputs_metrics_and_cost(
    settings: Settings,
    storage: LocalStorage,
    tiny: Predictor,
    new_prediction: Callable[[dict[str, object]], str],
) -> None:
    prediction_id = new_prediction({**SMALL, "num_images": 2})
    assert run_prediction(prediction_id, settings=settings, predictor=tiny, storage=storage) is Status.SUCCEEDED
    done = row(settings.database_url, prediction_id)
    assert done.output_keys == [f"outputs/{prediction_id}/1/0.png", f"outputs/{prediction_id}/1/1.png"]
    assert all(storage.get(key).startswith(b"\x89PNG") for key in done.output_keys)
    assert done.predict_time and done.gpu_seconds and done.gpu_seconds >= done.predict_time
    assert done.cost_usd == pytest.approx(done.gpu_seconds * settings.gpu_hourly_usd / 3600, rel=1e-3)
    assert done.gpu_class == "cpu"
    assert "4/4" in done.logs


def test_a_duplicate_delivery_is_a_harmless_no_op(
    settings: Settings,
    storage: LocalStorage,
    tiny: Predictor,
    new_prediction: Callable[[dict[str, object]], str],
) -> None:
    prediction_id = new_prediction(SMALL)
    run_prediction(prediction_id, settings=settings, predictor=tiny, storage=storage)
    first = row(settings.database_url, prediction_id)
    assert run_prediction(prediction_id, settings=settings, predictor=tiny, storage=storage) is None
    second = row(settings.database_url, prediction_id)
    assert (second.status, second.attempt, second.output_keys, second.completed_at) == (
        Status.SUCCEEDED,
        1,
        first.output_keys,
        first.completed_at,
    )
    assert not (Path(settings.storage_url) / "outputs" / prediction_id / "2").exists()


class CancelAtStep:
    """The real tiny predictor, with the customer's cancel arriving while step ``at`` runs."""

    def __init__(self, predictor: Predictor, database_url: str, prediction_id: str, at: int) -> None:
        self.predictor, self.database_url, self.prediction_id, self.at = (
            predictor,
            database_url,
            prediction_id,
            at,
        )
        self.build, self.gpu_class = predictor.build, predictor.gpu_class
        self.steps_seen: list[int] = []

    def watched(self, on_step: Callable[[int, int], None]) -> Callable[[int, int], None]:
        def watched(step: int, total: int) -> None:
            self.steps_seen.append(step)
            if step == self.at:
                with session_scope(self.database_url) as session:
                    lifecycle.request_cancel(session, prediction_id=self.prediction_id)
            on_step(step, total)

        return watched

    def predict(self, request: RenderRequest, on_step: Callable[[int, int], None]) -> list[Image.Image]:
        return self.predictor.predict(request, self.watched(on_step))

    def predict_batch(
        self, requests: list[RenderRequest], on_step: Callable[[int, int], None]
    ) -> list[list[Image.Image]]:
        return self.predictor.predict_batch(requests, self.watched(on_step))


def test_cancel_while_running_stops_at_the_next_step_with_no_output(
    settings: Settings,
    storage: LocalStorage,
    tiny: Predictor,
    new_prediction: Callable[[dict[str, object]], str],
) -> None:
    prediction_id = new_prediction({**SMALL, "steps": 10})
    canceling = CancelAtStep(tiny, settings.database_url, prediction_id, at=3)
    status = run_prediction(prediction_id, settings=settings, predictor=canceling, storage=storage)  # type: ignore[arg-type]
    assert status is Status.CANCELED
    assert canceling.steps_seen == [1, 2, 3]  # stopped at the step where the cancel arrived
    done = row(settings.database_url, prediction_id)
    assert (done.status, done.output_keys, done.error) == (Status.CANCELED, None, None)
    assert not (Path(settings.storage_url) / "outputs" / prediction_id).exists()


class RaisesInPredict:
    build, gpu_class = "raises", "cpu"

    def predict(self, request: RenderRequest, on_step: Callable[[int, int], None]) -> Iterator[object]:
        raise RuntimeError("CUDA out of memory (simulated)")

    def predict_batch(self, requests: list[RenderRequest], on_step: Callable[[int, int], None]) -> Iterator[object]:
        raise RuntimeError("CUDA out of memory (simulated)")


def test_an_exception_in_the_pipeline_fails_the_prediction_readably(
    settings: Settings, storage: LocalStorage, new_prediction: Callable[[dict[str, object]], str]
) -> None:
    prediction_id = new_prediction(SMALL)
    status = run_prediction(prediction_id, settings=settings, predictor=RaisesInPredict(), storage=storage)  # type: ignore[arg-type]
    assert status is Status.FAILED
    done = row(settings.database_url, prediction_id)
    assert (done.status, done.error) == (Status.FAILED, "RuntimeError: CUDA out of memory (simulated)")


def test_an_init_image_is_read_from_storage_and_sets_the_output_size(
    settings: Settings, storage: LocalStorage, tiny: Predictor, database_url: str, api_key: str
) -> None:
    prediction_id = new_prediction_id()
    image = io.BytesIO()
    Image.new("RGB", (300, 200), "red").save(image, "PNG")
    storage.put(init_image_key(prediction_id), image.getvalue(), "image/png")
    inputs = {"prompt": "a fox", "steps": 4, "prompt_strength": 0.5, "image": "https://example.com/fox.png"}
    with session_scope(database_url) as session:
        key = find_active_key(session, api_key)
        assert key is not None
        lifecycle.create_prediction(
            session,
            lifecycle.NewPrediction(
                api_key_id=key.id,
                spec=SD35_MEDIUM,
                inputs={**inputs, "output_format": "png"},
                seed=5,
                max_attempts=3,
                id=prediction_id,
                image_key=init_image_key(prediction_id),
            ),
        )

    assert run_prediction(prediction_id, settings=settings, predictor=tiny, storage=storage) is Status.SUCCEEDED
    done = row(database_url, prediction_id)
    assert done.output_keys is not None
    assert Image.open(io.BytesIO(storage.get(done.output_keys[0]))).size == (1280, 832)
    assert "2/2" in done.logs  # 4 steps at strength 0.5
    assert done.price_usd == pytest.approx(0.02 * 1280 * 832 / 1e6)


def test_an_image_input_without_a_stored_init_image_fails_readably(
    settings: Settings, storage: LocalStorage, tiny: Predictor, new_prediction: Callable[[dict[str, object]], str]
) -> None:
    prediction_id = new_prediction({**SMALL, "image": "https://example.com/fox.png"})
    assert run_prediction(prediction_id, settings=settings, predictor=tiny, storage=storage) is Status.FAILED
    assert "no init image" in str(row(settings.database_url, prediction_id).error)


@pytest.fixture(scope="module")
def checkers(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, SafetyChecker]:
    """Tiny checkers loaded from disk by the real loader: True flags every image, False none."""
    return {
        flag: load_safety_checker(
            str(save_tiny_safety_checker(tmp_path_factory.mktemp("checker"), flag_everything=flag))
        )
        for flag in (True, False)
    }


def is_black(data: bytes) -> bool:
    return Image.open(io.BytesIO(data)).convert("RGB").getextrema() == ((0, 0),) * 3


@pytest.mark.parametrize("flagged", [True, False])
def test_a_loaded_checker_records_a_flag_per_image_and_blacks_out_flagged_ones(
    settings: Settings,
    storage: LocalStorage,
    tiny: Predictor,
    checkers: dict[bool, SafetyChecker],
    new_prediction: Callable[[dict[str, object]], str],
    flagged: bool,
) -> None:
    prediction_id = new_prediction({**SMALL, "num_images": 2})  # enable_safety_checker defaults to true
    status = run_prediction(
        prediction_id, settings=settings, predictor=tiny, storage=storage, safety_checker=checkers[flagged]
    )
    assert status is Status.SUCCEEDED
    done = row(settings.database_url, prediction_id)
    assert done.has_nsfw_concepts == [flagged, flagged]
    assert done.output_keys is not None
    outputs = [storage.get(key) for key in done.output_keys]
    assert [Image.open(io.BytesIO(data)).size for data in outputs] == [(256, 256)] * 2
    assert [is_black(data) for data in outputs] == [flagged, flagged]
    assert NO_SAFETY_CHECKER not in done.logs
    assert done.logs.splitlines()[-1] == (
        "Safety checker: 2 of 2 image(s) flagged (output 0, 1) and replaced by black images."
        if flagged
        else "Safety checker: 2 image(s) checked, none flagged."
    )


def test_enable_safety_checker_false_skips_the_loaded_checker_and_says_so(
    settings: Settings,
    storage: LocalStorage,
    tiny: Predictor,
    checkers: dict[bool, SafetyChecker],
    new_prediction: Callable[[dict[str, object]], str],
) -> None:
    prediction_id = new_prediction({**SMALL, "enable_safety_checker": False})
    status = run_prediction(
        prediction_id, settings=settings, predictor=tiny, storage=storage, safety_checker=checkers[True]
    )
    assert status is Status.SUCCEEDED
    done = row(settings.database_url, prediction_id)
    assert done.has_nsfw_concepts is None
    assert SAFETY_CHECKER_DISABLED in done.logs
    assert done.output_keys is not None and not is_black(storage.get(done.output_keys[0]))


def test_without_a_checker_has_nsfw_concepts_is_sql_null_and_the_logs_say_why(
    settings: Settings, storage: LocalStorage, tiny: Predictor, new_prediction: Callable[[dict[str, object]], str]
) -> None:
    prediction_id = new_prediction(SMALL)
    assert run_prediction(prediction_id, settings=settings, predictor=tiny, storage=storage) is Status.SUCCEEDED
    assert NO_SAFETY_CHECKER in row(settings.database_url, prediction_id).logs
    with session_scope(settings.database_url) as session:
        stored = session.execute(
            text("SELECT has_nsfw_concepts IS NULL FROM predictions WHERE id = :id"), {"id": prediction_id}
        ).scalar_one()
    assert stored is True  # never a made-up false, nor a JSON null


# Batching: each test's shape is its own, so no other test's queued job fits its batch.
BATCHABLE = {"prompt": "a red fox", "width": 288, "height": 272, "steps": 3, "output_format": "png"}


@pytest.fixture
def batching(settings: Settings) -> Settings:
    return settings.model_copy(update={"batch_max_images": 3})


def test_a_batch_renders_queued_jobs_that_fit_with_the_claimed_one(
    batching: Settings, storage: LocalStorage, tiny: Predictor, new_prediction: Callable[[dict[str, object]], str]
) -> None:
    prompts = {new_prediction({**BATCHABLE, "prompt": prompt}): prompt for prompt in ("a fox", "a boat", "an owl")}
    lead, boat, owl = prompts
    other_steps = new_prediction({**BATCHABLE, "steps": 4})
    no_room = new_prediction(BATCHABLE)  # the batch holds 3 images

    started = time.perf_counter()
    assert run_prediction(lead, settings=batching, predictor=tiny, storage=storage) is Status.SUCCEEDED
    elapsed = time.perf_counter() - started

    done = {prediction_id: row(batching.database_url, prediction_id) for prediction_id in prompts}
    assert {(job.status, job.attempt, job.worker) for job in done.values()} == {
        (Status.SUCCEEDED, 1, done[lead].worker)
    }
    assert [row(batching.database_url, left).status for left in (other_steps, no_room)] == [Status.STARTING] * 2
    for prediction_id, prompt in prompts.items():
        job = done[prediction_id]
        assert "3/3" in job.logs and BATCHED.format(others=2) in job.logs
        assert job.price_usd == pytest.approx(0.02 * 288 * 272 / 1e6)
        assert job.output_keys is not None
        (image,) = [Image.open(io.BytesIO(storage.get(key))) for key in job.output_keys]
        request = RenderRequest.from_input(SD35Input.model_validate({**BATCHABLE, "prompt": prompt}), seed=5)
        (alone,) = tiny.predict(request, lambda step, total: None)
        # Its own prompt and seed, as a solo run renders them up to rounding.
        assert sum(ImageStat.Stat(ImageChops.difference(image.convert("RGB"), alone)).mean) / 3 < 1
    # The GPU time is shared, not counted once per job.
    assert sum(job.gpu_seconds or 0 for job in done.values()) <= elapsed
    # Their own deliveries find them taken.
    assert run_prediction(boat, settings=batching, predictor=tiny, storage=storage) is None
    assert run_prediction(owl, settings=batching, predictor=tiny, storage=storage) is None


def test_a_job_canceled_during_its_batch_ends_canceled_and_the_others_finish(
    batching: Settings, storage: LocalStorage, tiny: Predictor, new_prediction: Callable[[dict[str, object]], str]
) -> None:
    shape = {**BATCHABLE, "width": 272, "height": 288}
    lead, canceled = new_prediction(shape), new_prediction({**shape, "prompt": "a boat"})
    canceling = CancelAtStep(tiny, batching.database_url, canceled, at=2)

    status = run_prediction(lead, settings=batching, predictor=canceling, storage=storage)  # type: ignore[arg-type]

    assert status is Status.SUCCEEDED
    assert canceling.steps_seen == [1, 2, 3]
    stopped = row(batching.database_url, canceled)
    assert (stopped.status, stopped.output_keys, stopped.progress_step) == (Status.CANCELED, None, 2)
    assert not (Path(batching.storage_url) / "outputs" / canceled).exists()
    assert row(batching.database_url, lead).output_keys is not None


def test_an_exception_in_a_batch_fails_every_job_of_it(
    batching: Settings, storage: LocalStorage, new_prediction: Callable[[dict[str, object]], str]
) -> None:
    shape = {**BATCHABLE, "width": 304, "height": 256}
    jobs = [new_prediction(shape), new_prediction({**shape, "prompt": "a boat"})]

    status = run_prediction(jobs[0], settings=batching, predictor=RaisesInPredict(), storage=storage)  # type: ignore[arg-type]

    assert status is Status.FAILED
    assert {(row(batching.database_url, job).status, row(batching.database_url, job).error) for job in jobs} == {
        (Status.FAILED, "RuntimeError: CUDA out of memory (simulated)")
    }
