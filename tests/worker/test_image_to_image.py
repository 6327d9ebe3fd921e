"""Image-to-image on the real tiny SD3 pipeline: shared weights without a dtype cast, explicit output size,
the strength-shortened step count, determinism, and strength 1 ignoring the init image."""

import pytest
import torch
from PIL import Image

from models.inputs import RenderRequest
from worker.pipelines import load_predictor
from worker.pipelines.image_to_image import img2img_pipeline
from worker.pipelines.tiny import TinyPredictor, build_tiny_pipeline


def make_request(**changes: object) -> RenderRequest:
    fields: dict[str, object] = {
        "prompt": "a red fox in the snow",
        "negative_prompt": "",
        "width": 320,
        "height": 256,
        "steps": 10,
        "guidance_scale": 5.0,
        "seeds": (1,),
        "output_format": "png",
        "output_quality": 90,
        "init_image_key": "inputs/test/image.png",
        "strength": 0.5,
    }
    return RenderRequest(**(fields | changes))  # type: ignore[arg-type]


def gradient(size: tuple[int, int], flip: bool = False) -> Image.Image:
    """Dark at the top, light at the bottom (or the other way round with ``flip``)."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if flip else image


def no_progress(done: int, total: int) -> None:
    pass


@pytest.fixture(scope="module")
def predictor() -> TinyPredictor:
    tiny = load_predictor("tiny", model_path="")
    assert isinstance(tiny, TinyPredictor)
    return tiny


def test_img2img_shares_the_modules_without_casting_them() -> None:
    pipe = build_tiny_pipeline().to(torch.bfloat16)

    img2img = img2img_pipeline(pipe)

    assert img2img.transformer is pipe.transformer and img2img.vae is pipe.vae
    assert img2img.text_encoder is pipe.text_encoder and img2img.tokenizer_2 is pipe.tokenizer_2
    # from_pipe without a dtype would have turned the shared modules (so the text pipeline too) float32.
    assert {p.dtype for p in pipe.transformer.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.bfloat16}
    assert img2img.scheduler is not pipe.scheduler  # schedulers are stateful: one each


def test_output_has_the_requested_size_whatever_the_init_image(predictor: TinyPredictor) -> None:
    images = predictor.predict(make_request(width=320, height=256, seeds=(1, 2)), no_progress, gradient((97, 61)))

    assert [(image.mode, image.size) for image in images] == [("RGB", (320, 256))] * 2


@pytest.mark.parametrize(("steps", "strength", "runs"), [(10, 0.5, 5), (10, 1.0, 10), (40, 0.85, 34), (10, 0.0, 1)])
def test_on_step_reports_the_steps_that_really_run(
    predictor: TinyPredictor, steps: int, strength: float, runs: int
) -> None:
    calls: list[tuple[int, int]] = []

    predictor.predict(
        make_request(steps=steps, strength=strength, width=256, height=256),
        lambda done, total: calls.append((done, total)),
        gradient((256, 256)),
    )

    assert calls == [(step, runs) for step in range(1, runs + 1)]


def test_same_request_and_image_give_the_same_pixels(predictor: TinyPredictor) -> None:
    request = make_request()
    first = predictor.predict(request, no_progress, gradient((320, 256)))
    second = predictor.predict(request, no_progress, gradient((320, 256)))

    assert first[0].tobytes() == second[0].tobytes()


def test_the_init_image_matters_below_strength_1_and_not_at_1(predictor: TinyPredictor) -> None:
    def render(strength: float, flip: bool) -> bytes:
        request = make_request(strength=strength)
        return predictor.predict(request, no_progress, gradient((320, 256), flip=flip))[0].tobytes()

    assert render(0.5, flip=False) != render(0.5, flip=True)
    # At strength 1 the first sigma is 1: the latents are pure noise, the init image contributes nothing.
    assert render(1.0, flip=False) == render(1.0, flip=True)


def test_text_to_image_still_runs_without_an_init_image(predictor: TinyPredictor) -> None:
    calls: list[tuple[int, int]] = []
    request = make_request(init_image_key=None, strength=1.0, steps=4)

    (image,) = predictor.predict(request, lambda done, total: calls.append((done, total)))

    assert image.size == (320, 256) and calls[-1] == (4, 4)


def test_invalid_strength_fails_before_running(predictor: TinyPredictor) -> None:
    with pytest.raises(ValueError, match="strength must be between 0 and 1"):
        predictor.predict(make_request(strength=1.5), no_progress, gradient((64, 64)))
