"""Same model build, inputs and seed give the same pixels, whichever worker process runs them."""

from tests.e2e.test_quick_start import create, download_image
from tests.farm import Farm


def test_same_seed_same_pixels_across_worker_processes(farm: Farm, s3_farm: Farm) -> None:
    inputs = {
        "prompt": "a quiet harbour",
        "width": 320,
        "height": 256,
        "steps": 6,
        "seed": 1234,
        "output_format": "png",
    }
    results = [one.wait(str(create(one, inputs)["id"])) for one in (farm, s3_farm)]
    assert [result["status"] for result in results] == ["succeeded", "succeeded"]
    assert results[0]["output"] != results[1]["output"]  # two farms, two stores
    first, second = (download_image(result["output"][0]).tobytes() for result in results)  # type: ignore[index]
    assert first == second


def test_a_different_seed_gives_different_pixels(farm: Farm) -> None:
    base = {"prompt": "a quiet harbour", "width": 256, "height": 256, "steps": 4, "output_format": "png"}
    images = [
        download_image(farm.wait(str(create(farm, {**base, "seed": seed})["id"]))["output"][0]) for seed in (1, 2)
    ]  # type: ignore[index]
    assert images[0].tobytes() != images[1].tobytes()
