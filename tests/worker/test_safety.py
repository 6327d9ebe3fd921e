"""The safety checker through its real loader, from tiny random checkers saved in code (no hub)."""

import json
from pathlib import Path

import pytest
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import CLIPConfig
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from models.settings import Settings
from worker import warm
from worker.safety import SafetyCheckerNotLoaded, load_safety_checker


def save_tiny_safety_checker(folder: Path, *, flag_everything: bool) -> Path:
    """A StableDiffusionSafetyChecker with a tiny random CLIP vision tower and its image processor config.

    A concept is flagged when cos(image, concept) - threshold > 0; cosines lie in [-1, 1], so thresholds of -2
    flag every image and +2 none.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = CLIPConfig(
            text_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "vocab_size": 99,
                "bos_token_id": 0,
                "eos_token_id": 1,
                "pad_token_id": 1,
            },
            vision_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 32,
                "patch_size": 8,
            },
            projection_dim=8,
        )
        checker = StableDiffusionSafetyChecker(config).eval()
        torch.nn.init.normal_(checker.concept_embeds)
        torch.nn.init.normal_(checker.special_care_embeds)
    threshold = -2.0 if flag_everything else 2.0
    checker.concept_embeds_weights.data.fill_(threshold)
    checker.special_care_embeds_weights.data.fill_(threshold)
    checker.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def flags_everything(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_safety_checker(tmp_path_factory.mktemp("flags-everything"), flag_everything=True)


@pytest.fixture(scope="module")
def flags_nothing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_safety_checker(tmp_path_factory.mktemp("flags-nothing"), flag_everything=False)


def images() -> list[Image.Image]:
    return [Image.new("RGB", (64, 48), "red"), Image.effect_noise((40, 40), 60).convert("RGB")]


def test_flagged_images_become_black_images_of_the_same_size(flags_everything: Path) -> None:
    checked, flags = load_safety_checker(str(flags_everything)).check(images())
    assert flags == [True, True]
    assert [image.size for image in checked] == [(64, 48), (40, 40)]
    assert all(image.getextrema() == ((0, 0),) * 3 for image in checked)


def test_unflagged_images_are_returned_unchanged(flags_nothing: Path) -> None:
    originals = images()
    checked, flags = load_safety_checker(str(flags_nothing)).check(originals)
    assert flags == [False, False]
    assert all(type(flag) is bool for flag in flags)  # JSON booleans, not numpy ones
    assert [image.tobytes() for image in checked] == [image.tobytes() for image in originals]


def test_the_published_checkpoint_layout_loads(flags_everything: Path, tmp_path: Path) -> None:
    """CompVis/stable-diffusion-safety-checker nests the vision weights (vision_model.vision_model.*), carries
    position_ids and ships pytorch_model.bin, as saved by older transformers."""
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_bytes((flags_everything / name).read_bytes())
    weights = load_file(flags_everything / "model.safetensors")
    legacy = {f"vision_model.{key}" if key.startswith("vision_model.") else key: v for key, v in weights.items()}
    legacy["vision_model.vision_model.embeddings.position_ids"] = torch.arange(17).unsqueeze(0)
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    # The published image processor config is in the old feature extractor format.
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"feature_extractor_type": "CLIPFeatureExtractor", "crop_size": 32, "size": 32, "resample": 3})
    )
    assert load_safety_checker(str(tmp_path)).check(images())[1] == [True, True]


def test_a_missing_directory_fails_saying_what_to_put_there(tmp_path: Path) -> None:
    with pytest.raises(SafetyCheckerNotLoaded) as error:
        load_safety_checker(str(tmp_path / "nowhere"))
    message = str(error.value)
    assert "FARM_SAFETY_CHECKER_PATH" in message and "is not a directory" in message
    assert "preprocessor_config.json" in message and "CompVis/stable-diffusion-safety-checker" in message


def test_an_incomplete_directory_names_what_is_missing(flags_everything: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes((flags_everything / "config.json").read_bytes())
    with pytest.raises(SafetyCheckerNotLoaded, match="has no preprocessor_config.json, model.safetensors or"):
        load_safety_checker(str(tmp_path))


def test_weights_without_the_concept_thresholds_are_refused(flags_everything: Path, tmp_path: Path) -> None:
    """transformers would fill the missing thresholds with arbitrary values and only warn: never served."""
    for name in ("config.json", "preprocessor_config.json"):
        (tmp_path / name).write_bytes((flags_everything / name).read_bytes())
    weights = load_file(flags_everything / "model.safetensors")
    del weights["concept_embeds_weights"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(SafetyCheckerNotLoaded, match="weights lack concept_embeds_weights"):
        load_safety_checker(str(tmp_path))


def use_settings(monkeypatch: pytest.MonkeyPatch, safety_checker_path: str) -> None:
    monkeypatch.setattr(warm, "get_settings", lambda: Settings(safety_checker_path=safety_checker_path))
    monkeypatch.setattr(warm, "_safety_checker", None)


def test_the_worker_loads_the_configured_checker_once(flags_everything: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_settings(monkeypatch, str(flags_everything))
    loaded = warm.get_safety_checker()
    assert loaded is not None and warm.get_safety_checker() is loaded


def test_the_worker_has_no_checker_when_none_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    use_settings(monkeypatch, "")
    assert warm.get_safety_checker() is None


def test_a_configured_checker_that_cannot_load_fails_every_job_not_just_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up hook logs the error; each job asks again and fails, so no output goes out unchecked."""
    use_settings(monkeypatch, str(tmp_path / "nowhere"))
    for _ in range(2):
        with pytest.raises(SafetyCheckerNotLoaded):
            warm.get_safety_checker()
