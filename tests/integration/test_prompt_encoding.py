"""Prompts encode as A1111 reads them, on the built-in tiny SD 1.x and SDXL models: plain
prompts exactly as the pipeline's own encode_prompt (so their pixels stay), emphasis and the
words past 77 tokens change the image, equal weights do not, and images whose prompts need
different chunk counts render as they would alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdfarm.config import Settings
from sdfarm.spec import RenderSpec
from sdfarm.worker.builtin import ensure_builtin
from sdfarm.worker.prompt_encoder import chunk_prompt, encode_prompts, prepare
from sdfarm.worker.render import DiffusersRenderer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SD1 = RenderSpec(model="builtin:tiny", prompt="a photo of a cat", negative_prompt="blurry",
                 seed=3, steps=3, width=64, height=64)
SDXL = SD1.replace(model="builtin:tiny-sdxl", family="sdxl")
#: 30 words of one token each (the tiny tokenizer learned them whole), 60 tokens with commas.
HEAD = ", ".join(["masterpiece", "best", "quality", "cat", "dog", "forest", "castle", "night",
                  "sunset", "river", "lake", "ocean", "mountain", "tree", "flower", "bird",
                  "horse", "fox", "wolf", "lion", "tiger", "owl", "fish", "dragon", "robot",
                  "knight", "wizard", "king", "queen", "moon"])


@pytest.fixture(scope="module")
def renderer(model_dir: Path) -> DiffusersRenderer:
    ensure_builtin("tiny", model_dir)
    ensure_builtin("tiny-sdxl", model_dir)
    return DiffusersRenderer(Settings(database_url="sqlite://", model_dir=model_dir,
                                      device="cpu", threads=1))


def pipe_of(renderer: DiffusersRenderer, spec: RenderSpec):
    return renderer.pipeline(spec.model, None, False, spec.family, spec.prediction)[0]


def render(renderer: DiffusersRenderer, *specs: RenderSpec, on_step=lambda: None) -> list[np.ndarray]:
    images = renderer.render(list(specs), model_config=None, allow_pickle=False, on_step=on_step)
    return [np.asarray(i, dtype=np.int16) for i in images]


def test_tiny_tokenizer_counts_used_here(renderer):
    # The test prompts below rely on these counts: a word the tiny tokenizer never learned
    # (zebra) is several tokens, a common prompt word one.
    tokenizer = pipe_of(renderer, SD1).tokenizer
    assert len(tokenizer(HEAD, add_special_tokens=False).input_ids) == 59
    assert len(tokenizer("zebra", add_special_tokens=False).input_ids) > 1


def test_plain_prompts_encode_bit_identically_to_the_sd1_pipeline(renderer):
    pipe = pipe_of(renderer, SD1)
    prompts, negatives = ["a photo of a cat", HEAD], ["blurry", ""]
    ours = encode_prompts(pipe, "sd1", prompts, negatives)
    theirs = pipe.encode_prompt(prompts, "cpu", 1, True, negatives)
    assert torch.equal(ours["prompt_embeds"], theirs[0])
    assert torch.equal(ours["negative_prompt_embeds"], theirs[1])


def test_plain_prompts_encode_bit_identically_to_the_sdxl_pipeline(renderer):
    pipe = pipe_of(renderer, SDXL)
    prompts, negatives = ["a photo of a cat", HEAD], ["blurry", ""]
    ours = encode_prompts(pipe, "sdxl", prompts, negatives)
    theirs = pipe.encode_prompt(prompts, None, "cpu", 1, True, negatives)
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
             "negative_pooled_prompt_embeds")
    for name, tensor in zip(names, theirs, strict=True):
        assert torch.equal(ours[name], tensor), name


@pytest.mark.parametrize("base", [SD1, SDXL], ids=["sd1", "sdxl"])
def test_emphasis_changes_the_image_and_equal_weights_do_not(renderer, base):
    plain, same, stronger = render(renderer, base, base.replace(prompt="(a photo of a cat:1.0)"),
                                   base.replace(prompt="a photo of a (cat:1.4)"))
    assert np.array_equal(plain, same)
    assert np.abs(plain - stronger).max() > 0


@pytest.mark.parametrize("base", [SD1, SDXL], ids=["sd1", "sdxl"])
def test_the_tail_of_a_150_token_prompt_changes_the_image(renderer, base):
    # Two prompts equal in their first 120 tokens, different in their last 30: cut at 77
    # tokens they would be one image.
    head = f"{HEAD}, {HEAD}"
    a = base.replace(prompt=f"{head}, " + ", ".join(["castle"] * 15) + " hd")
    b = base.replace(prompt=f"{head}, " + ", ".join(["dragon"] * 15) + " hd")
    pipe = pipe_of(renderer, base)
    assert chunk_prompt(pipe, pipe.tokenizer, a.prompt).tokens == 150
    assert prepare(pipe, base.family, a.prompt, "").chunks == 2
    first, second = render(renderer, a, b)
    assert np.abs(first - second).max() > 0


def test_chunks_of_a_real_prompt_break_at_the_comma_a1111_would(renderer):
    pipe = pipe_of(renderer, SD1)
    # HEAD is 59 tokens; ", zebra" adds a comma and zebra's pieces, then words follow until
    # the chunk is full: the words after the last comma within 20 tokens move on whole.
    zebra = len(pipe.tokenizer("zebra", add_special_tokens=False).input_ids)
    prompt = f"{HEAD}, zebra, a photo of a cat in a forest at night with a dragon"
    tail = len(pipe.tokenizer(" a photo of a cat in a forest at night with a dragon",
                              add_special_tokens=False).input_ids)
    chunked = chunk_prompt(pipe, pipe.tokenizer, prompt)
    assert 59 + 1 + zebra + 1 + tail > 75  # the prompt does need two chunks
    first, second = chunked.chunks
    assert first.used == 59 + 1 + zebra + 1  # up to and with the comma after zebra
    assert second.used == tail
    assert chunked.tokens == first.used + second.used
    # BREAK closes the chunk where it stands
    broken = chunk_prompt(pipe, pipe.tokenizer, "a cat BREAK a dog")
    assert [c.used for c in broken.chunks] == [2, 2]


def test_a_negative_prompt_is_padded_with_empty_chunks_to_the_prompts_count(renderer):
    pipe = pipe_of(renderer, SD1)
    long = f"{HEAD}, {HEAD}"
    out = encode_prompts(pipe, "sd1", [long], ["blurry"])
    assert out["prompt_embeds"].shape[1] == out["negative_prompt_embeds"].shape[1] == 154
    empty = encode_prompts(pipe, "sd1", [""], [""])["prompt_embeds"]
    assert torch.equal(out["negative_prompt_embeds"][:, 77:], empty)


def test_a_pass_of_prompts_of_different_lengths_renders_one_sub_pass_per_chunk_count(renderer):
    # Padding the short prompts to the long one's 154 tokens would change their images (the
    # attention reads every token); they render as a pass of their own instead, and the long
    # one alone, each exactly as such a pass would.
    short = SD1.replace(seed=5)
    long = SD1.replace(prompt=f"{HEAD}, {HEAD}", seed=6)
    steps: list[int] = []
    together = render(renderer, short, long, short.replace(seed=7),
                      on_step=lambda: steps.append(1))
    assert len(steps) == SD1.steps  # the step hook runs once per step of the whole pass
    shorts = render(renderer, short, short.replace(seed=7))
    (alone,) = render(renderer, long)
    for a, b in zip(together, [shorts[0], alone, shorts[1]], strict=True):
        assert np.array_equal(a, b)


def test_extra_network_tags_are_not_encoded(renderer):
    pipe = pipe_of(renderer, SD1)
    tagged = encode_prompts(pipe, "sd1", ["a cat <lora:ghibli:0.6>"], [""])["prompt_embeds"]
    assert torch.equal(tagged, encode_prompts(pipe, "sd1", ["a cat "], [""])["prompt_embeds"])


def test_clip_skip_keeps_a1111_numbering(renderer):
    pipe = pipe_of(renderer, SD1)
    encoder = pipe.text_encoder
    ids = pipe.tokenizer(["a cat"], padding="max_length", max_length=77,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = encoder(ids, output_hidden_states=True).hidden_states
        expected = getattr(encoder, "text_model", encoder).final_layer_norm(hidden[-2])
    ours = encode_prompts(pipe, "sd1", ["a cat"], [""], clip_skip=2)["prompt_embeds"]
    assert torch.equal(ours, expected)


# --- plan time -------------------------------------------------------------------------------

def plan_stderr(cli_env, tmp_path, body: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from sdfarm.cli.main import cli
    from tests.conftest import write_job

    path = write_job(tmp_path, body)
    result = CliRunner().invoke(cli, ["plan", str(path)], env=cli_env)
    return result.exit_code, result.stderr, str(path)


def test_plan_says_when_a_prompt_is_chunked_and_how_many_tokens_it_has(cli_env, tmp_path):
    prompt = f"{HEAD}, {HEAD}, castle"
    code, stderr, path = plan_stderr(cli_env, tmp_path, f'model = "builtin:tiny"\n'
                                     f'prompt = "{prompt}"\nnegative_prompt = "(blurry:1.2)"\n'
                                     'seeds = [1]\n')
    assert code == 0
    assert stderr.splitlines() == [
        f"Warning: {path}: prompt: longer than the 75 tokens CLIP reads at once, encoded in "
        f"chunks of 75 as A1111 does: 'masterpiece, best, quality, cat, dog, fo...' has 121 "
        "tokens (2 chunks)"]


def test_plan_of_short_prompts_says_nothing(cli_env, tmp_path):
    code, stderr, _ = plan_stderr(cli_env, tmp_path, 'model = "builtin:tiny"\n'
                                  'prompt = "a (cat:1.2) BREAK a [dog]"\nseeds = [1]\n')
    assert code == 0 and stderr == ""


def test_plan_says_flux_does_not_read_emphasis(cli_env, tmp_path):
    code, stderr, path = plan_stderr(cli_env, tmp_path, 'model = "builtin:tiny-flux"\n'
                                     'prompt = "a (cat:1.2)"\nseeds = [1]\n')
    assert code == 0
    assert stderr.splitlines() == [
        f"Warning: {path}: prompt: Flux.1-dev models do not read A1111 emphasis or BREAK; "
        "'a (cat:1.2)' is encoded as written, brackets and all"]


def test_an_emphasis_weight_that_is_no_number_fails_the_plan_naming_the_key(cli_env, tmp_path):
    code, stderr, path = plan_stderr(cli_env, tmp_path, 'model = "builtin:tiny"\n'
                                     'prompt = "a (cat:1.2.3)"\nseeds = [1]\n')
    assert code != 0
    assert f"{path}: prompt: 'a (cat:1.2.3)': emphasis weight '1.2.3'" in stderr
    assert "Traceback" not in stderr


def test_plan_says_when_t5_cuts_an_sd3_prompt(cli_env, tmp_path):
    words = ", ".join(["castle"] * 150)
    code, stderr, path = plan_stderr(cli_env, tmp_path, 'model = "builtin:tiny-sd3"\n'
                                     f'prompt = "{words}"\nseeds = [1]\n')
    assert code == 0
    (line,) = stderr.splitlines()
    assert line.startswith(f"Warning: {path}: prompt: longer than the 256 tokens the T5 "
                           "encoder of SD 3.x models reads, and cut there: 'castle, castle,")


def test_a_textual_inversion_embedding_is_expanded_and_kept_in_one_chunk(model_dir):
    # A pipeline of its own: loading an embedding changes its tokenizer and encoder.
    from sdfarm.modelref import parse_model_ref
    from sdfarm.worker.models import load_pipeline

    pipe = load_pipeline(parse_model_ref("builtin:tiny", model_dir), model_dir, device="cpu",
                         dtype=torch.float32)
    width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
    vectors = torch.randn(4, width, generator=torch.Generator().manual_seed(0))
    pipe.load_textual_inversion({"zzemb": vectors}, token="zzemb")
    # HEAD is 59 tokens; 14 more make 73, so the embedding's 4 vectors would straddle 75
    prompt = f"{HEAD} " + " ".join(["cat"] * 14) + " zzemb dog"
    first, second = chunk_prompt(pipe, pipe.tokenizer, prompt).chunks
    ids = [pipe.tokenizer.convert_tokens_to_ids(t) for t in ("zzemb", "zzemb_1", "zzemb_2", "zzemb_3")]
    assert first.used == 73
    assert list(second.tokens[1:6]) == [*ids, pipe.tokenizer.convert_tokens_to_ids("dog</w>")]
    # and the embedding's vectors reach the encoder: the prompt differs from the word's
    with_embedding = encode_prompts(pipe, "sd1", ["a zzemb cat"], [""])["prompt_embeds"]
    pipe.unload_textual_inversion()
    assert with_embedding.shape == (1, 77, width)
    assert not torch.equal(with_embedding,
                           encode_prompts(pipe, "sd1", ["a zzemb cat"], [""])["prompt_embeds"])


def test_a_sweep_records_its_plan_warnings_and_watch_says_them_again(cli_env, tmp_path):
    from click.testing import CliRunner

    from sdfarm.cli.main import cli
    from tests.conftest import write_job

    # Given a sweep rendered from a prompt too long for one CLIP chunk
    path = write_job(tmp_path, f'model = "builtin:tiny"\nprompt = "{HEAD}, {HEAD}, castle"\n'
                               'seeds = [1]\nwidth = 64\nheight = 64\nsteps = 1\n')
    rendered = CliRunner().invoke(cli, ["render", str(path)], env=cli_env)
    assert rendered.exit_code == 0, rendered.output
    (warning,) = [line for line in rendered.stderr.splitlines() if line.startswith("Warning:")]
    assert "has 121 tokens (2 chunks)" in warning
    # When it is watched later (a farm sweep submitted by a script, say)
    watched = CliRunner().invoke(cli, ["watch", "1"], env=cli_env)
    # Then the warning planning gave is said again, as it was said then
    assert watched.exit_code == 0, watched.output
    assert warning in watched.stderr.splitlines()
