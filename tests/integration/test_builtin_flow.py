"""The built-in SD 2.x v-prediction, Flux.1-dev and SD 3.5 toy models: each builds the same
files every time, loads offline as its family's pipeline and renders deterministically, and
the flow families' own controls (Flux's distilled guidance and real CFG, the flow shift)
change the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdfarm.config import Settings
from sdfarm.families import FAMILIES, family_defaults
from sdfarm.modelref import BUILTIN_FAMILIES, parse_model_ref
from sdfarm.spec import RenderSpec
from sdfarm.worker.builtin import ensure_builtin
from sdfarm.worker.models import load_pipeline
from sdfarm.worker.render import DiffusersRenderer

pytestmark = pytest.mark.slow

NAMES = ("tiny-sd2v", "tiny-flux", "tiny-sd3")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model folder for the module, with the three models built in it."""
    model_dir = tmp_path_factory.mktemp("flow-models")
    for name in NAMES:
        ensure_builtin(name, model_dir)
    return model_dir


@pytest.fixture(scope="module")
def renderer(model_dir: Path):
    # One thread: these ops are too small to gain from more, and on a busy 2-core machine
    # OpenMP threads waiting on each other make a 0.1 s render take seconds.
    before = torch.get_num_threads()
    settings = Settings(database_url="sqlite://", model_dir=model_dir, device="cpu",
                        dtype="float32", threads=1, pipeline_cache_size=len(NAMES))
    yield DiffusersRenderer(settings)
    torch.set_num_threads(before)


def spec_for(name: str, **changes: object) -> RenderSpec:
    """A 64x64, 4-step spec of builtin ``name`` with its family's defaults."""
    family, prediction = BUILTIN_FAMILIES[name]
    defaults = family_defaults(family, prediction)
    spec = RenderSpec(model=f"builtin:{name}", prompt="a photo of a cat", seed=1, steps=4,
                      width=64, height=64, family=family, prediction=prediction,
                      sampler=defaults["sampler"], cfg=defaults["cfg"],
                      guidance=defaults["guidance"])
    return spec.replace(**changes)


def render(renderer: DiffusersRenderer, spec: RenderSpec) -> np.ndarray:
    [image] = renderer.render([spec], model_config=None, allow_pickle=False,
                              on_step=lambda: None)
    pixels = np.asarray(image, dtype=int)
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0, spec
    return pixels


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.abs(a - b).max() > 0)


@pytest.mark.parametrize("name", NAMES)
def test_given_two_fresh_model_dirs_then_each_builds_the_same_files(name, model_dir, tmp_path):
    # Given the model built once in the module's folder
    first = model_dir / f"builtin-{name}"
    # When it is built again in a fresh folder
    second = ensure_builtin(name, tmp_path)
    # Then both hold the same files, byte for byte, weights included
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert any(f.suffix == ".safetensors" for f in files)
    for f in files:
        assert (first / f).read_bytes() == (second / f).read_bytes(), f


@pytest.mark.parametrize("name", NAMES)
def test_each_model_loads_offline_as_its_familys_pipeline(name, model_dir):
    family, prediction = BUILTIN_FAMILIES[name]
    pipe = load_pipeline(parse_model_ref(f"builtin:{name}", model_dir), model_dir, device="cpu",
                         dtype=torch.float32, family=family, prediction=prediction)
    assert type(pipe).__name__ == FAMILIES[family].pipeline
    # The real CLIP vocabulary, all 49,408 rows, behind every CLIP encoder
    assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.text_encoder.config.vocab_size == 49408
    if name == "tiny-sd2v":
        assert pipe.scheduler.config.prediction_type == "v_prediction"
        assert pipe.unet.config.use_linear_projection
        assert pipe.text_encoder.config.hidden_act == "gelu"
        assert pipe.tokenizer.pad_token == "!"
    if name == "tiny-flux":
        assert pipe.transformer.config.guidance_embeds  # Flux.1-dev, not schnell
        assert pipe.scheduler.config.use_dynamic_shifting
        assert type(pipe.text_encoder_2).__name__ == "T5EncoderModel"
    if name == "tiny-sd3":
        assert pipe.scheduler.config.shift == 3.0
        assert pipe.tokenizer_2.pad_token == "!"
        assert type(pipe.text_encoder_3).__name__ == "T5EncoderModel"


@pytest.mark.parametrize("name", NAMES)
def test_a_seed_renders_the_same_pixels_twice_and_another_seed_others(name, renderer):
    # Given a 64x64 spec with the family's defaults
    spec = spec_for(name)
    # When it is rendered twice, and with another seed
    once, twice = render(renderer, spec), render(renderer, spec)
    other = render(renderer, spec.replace(seed=2))
    # Then the two renders are identical and the other seed differs
    assert np.array_equal(once, twice)
    assert differ(once, other)


def test_flux_dev_guidance_changes_the_pixels(renderer):
    default = render(renderer, spec_for("tiny-flux"))
    assert differ(default, render(renderer, spec_for("tiny-flux", guidance=7.0)))


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sd3"])
def test_shift_changes_the_pixels_of_a_flow_model(name, renderer):
    # Given the model's own shift (Flux: by image size; SD3: 3.0)
    own = render(renderer, spec_for(name))
    # When shift is set to another value
    shifted = render(renderer, spec_for(name, shift=1.0))
    # Then the pixels change, and the same shift again gives the same pixels
    assert differ(own, shifted)
    assert np.array_equal(shifted, render(renderer, spec_for(name, shift=1.0)))
    # and the next render without a shift is the model's own again
    assert np.array_equal(own, render(renderer, spec_for(name)))


def test_flux_real_cfg_with_a_negative_prompt_differs_from_cfg_1(renderer):
    plain = render(renderer, spec_for("tiny-flux"))
    real_cfg = render(renderer, spec_for("tiny-flux", cfg=3.5, negative_prompt="blurry"))
    assert differ(plain, real_cfg)
    # and the negative prompt is what the second pass reads
    other_negative = render(renderer, spec_for("tiny-flux", cfg=3.5, negative_prompt="a dog"))
    assert differ(real_cfg, other_negative)


def test_the_t5_tokenizer_survives_save_and_reload(tmp_path):
    from transformers import AutoTokenizer

    from sdfarm.worker.t5_vocab import t5_tokenizer

    # Given the generated T5 tokenizer
    tokenizer = t5_tokenizer()
    texts = ["a photo of a cat, golden hour", "Zebra 42!", "", "masterpiece, (best quality:1.2)"]
    # When it is saved and loaded back
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    # Then it is T5's kind (pad 0, </s> 1 after every text, unk 2) and encodes alike
    assert (reloaded.pad_token_id, reloaded.eos_token_id, reloaded.unk_token_id) == (0, 1, 2)
    assert reloaded.model_max_length == 512 and len(reloaded) == len(tokenizer)
    for text in texts:
        ids = tokenizer(text).input_ids
        assert reloaded(text).input_ids == ids and ids[-1] == 1, text
    assert tokenizer.decode(tokenizer("a photo of a cat").input_ids,
                            skip_special_tokens=True) == "a photo of a cat"
    # and a second generation is the same tokenizer, file for file
    again = tmp_path / "again"
    t5_tokenizer().save_pretrained(again)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / f).read_bytes() == (again / f).read_bytes(), f
