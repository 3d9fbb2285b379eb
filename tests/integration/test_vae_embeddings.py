"""A VAE from a file and textual inversion embeddings (issue 11), rendered for real on
builtin:tiny with tiny VAEs and embeddings made here with the real classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import func, select

from sdfarm.cli.main import cli
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, Sweep
from sdfarm.errors import JobFileError
from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.modelref import sha256_file
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import process_renderer
from tests.conftest import write_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Width of builtin:tiny's CLIP text encoder.
TINY_CLIP_WIDTH = 32


def tiny_vae(path: Path, seed: int, *, original_layout: bool) -> Path:
    """A random VAE with builtin:tiny's VAE config, as one .safetensors file in A1111's
    original layout or in diffusers' layout."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from sdfarm.worker.builtin import builtin_configs
    from sdfarm.worker.original_layout import vae_tensors

    config = builtin_configs("tiny").vae
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in AutoencoderKL(**config).state_dict().items()}
    if original_layout:
        state = {k.removeprefix("first_stage_model."): v.contiguous() for k, v in
                 vae_tensors(state, len(config["block_out_channels"])).items()}
    save_file(state, path)
    return path


def tiny_embedding(path: Path, seed: int, vectors: int = 2, **tensors) -> Path:
    """A textual inversion embedding for builtin:tiny, in A1111's safetensors layout."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors or {"emb_params": torch.randn(vectors, TINY_CLIP_WIDTH, generator=generator)},
              path)
    return path


def render(settings, path: Path) -> list[Job]:
    sweep_id = record(settings, load_plan(settings, path), force=True)
    outcome = render_sweep_locally(settings, sweep_id)
    assert outcome.failed == 0
    with session_factory(settings.database_url)() as session:
        return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def pixels(job: Job) -> np.ndarray:
    with Image.open(job.output_path) as im:
        return np.asarray(im.convert("RGB"))


def infotext(job: Job) -> str:
    with Image.open(job.output_path) as im:
        return im.text["parameters"]


def sdfarm(env: dict, *args):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def sweeps(url: str) -> int:
    if not Path(url.removeprefix("sqlite:///")).exists():
        return 0
    with session_factory(url)() as session:
        return session.scalar(select(func.count()).select_from(Sweep))


JOB = """
model = "builtin:tiny"
prompt = "{prompt}"
negative_prompt = "blurry"
steps = 2
width = 64
height = 64
seeds = [1]
"""


# --- VAE ------------------------------------------------------------------------------------


def test_given_a_vae_axis_of_two_files_when_rendered_then_the_model_loads_once(
        settings, tiny_model, tmp_path):
    # Given two VAEs, one in A1111's original layout and one in diffusers', of the same weights,
    # and a third with other weights, on a VAE axis with the model's own
    tiny_vae(tmp_path / "a-original.safetensors", 5, original_layout=True)
    tiny_vae(tmp_path / "a-diffusers.safetensors", 5, original_layout=False)
    other = tiny_vae(tmp_path / "b.safetensors", 6, original_layout=False)
    path = write_job(tmp_path, JOB.format(prompt="a red boat") + """
[axes]
x = { vae = ["", "a-original.safetensors", "a-diffusers.safetensors", "b.safetensors"] }
""")
    # When the grid renders in one process
    jobs = render(settings, path)
    renderer = process_renderer(settings)
    # Then the model was loaded once and each VAE file once
    assert renderer.loads == {"builtin:tiny": 1}
    assert sorted(Path(v).name for v in renderer.vaes.loads) == [
        "a-diffusers.safetensors", "a-original.safetensors", "b.safetensors"]
    assert set(renderer.vaes.loads.values()) == {1}
    by_vae = {(Path(j.vae).name if j.vae else "", j.seed): j for j in jobs}
    # The two layouts of one VAE decode identically; another VAE and the model's own differ
    a = pixels(by_vae["a-original.safetensors", 1])
    assert np.array_equal(a, pixels(by_vae["a-diffusers.safetensors", 1]))
    assert not np.array_equal(a, pixels(by_vae["", 1]))
    assert not np.array_equal(a, pixels(by_vae["b.safetensors", 1]))
    # The VAE's hash is in the key and in the infotext, as A1111 writes it, and read back
    job = by_vae["b.safetensors", 1]
    digest = sha256_file(other)[:10]
    assert job.vae_hash == digest and job.vae == str(other)
    assert f'Model: "builtin:tiny", VAE hash: {digest}, VAE: b.safetensors,' in infotext(job)
    spec = generation_from_infotext(parse_infotext(infotext(job))).spec
    assert (spec.vae, spec.vae_hash) == ("b.safetensors", digest)
    own = by_vae["", 1]
    assert own.vae == "" and own.vae_hash == "" and "VAE" not in infotext(own)
    assert len({j.key for j in jobs}) == len(jobs)


def test_given_a_vae_job_when_rerun_then_every_pixel_matches(settings, cli_env, tiny_model,
                                                             tmp_path):
    tiny_vae(tmp_path / "vae.safetensors", 7, original_layout=True)
    job = write_job(tmp_path, JOB.format(prompt="a lighthouse") + 'vae = "vae.safetensors"\n')
    result = sdfarm(cli_env, "render", job, "-q")
    assert result.exit_code == 0, result.output
    result = sdfarm(cli_env, "rerun", 1)
    assert result.exit_code == 0, result.output
    assert "identical: every pixel matches the original" in result.output, result.output


def test_rerun_set_vae_and_prompt_hash_what_the_job_now_uses(settings, cli_env, tiny_model,
                                                              tmp_path):
    # Given a job rendered with the model's own VAE and no embedding
    folder = tmp_path / "embeddings"
    emb = tiny_embedding(folder / "Shiny.safetensors", 4)
    vae = tiny_vae(tmp_path / "vae.safetensors", 8, original_layout=False)
    env = {**cli_env, "SDFARM_EMBEDDING_DIR": str(folder)}
    result = sdfarm(env, "render", write_job(tmp_path, JOB.format(prompt="a cat")), "-q")
    assert result.exit_code == 0, result.output
    # When it is rerun with a VAE and a prompt that uses the embedding
    result = sdfarm(env, "rerun", 1, "--set", f"vae={vae}", "--set", "prompt=a shiny cat")
    assert result.exit_code == 0, result.output
    # Then the new job records (and its key holds) the hashes of both files
    with session_factory(settings.database_url)() as session:
        new = session.get(Job, 2)
        assert (new.vae, new.vae_hash) == (str(vae), sha256_file(vae)[:10])
        assert new.ti_hashes == f"Shiny: {sha256_file(emb)[:12]}"
    # And a VAE that is not there is refused, naming --set vae, before anything is recorded
    result = sdfarm(env, "rerun", 1, "--set", "vae=gone.safetensors")
    assert result.exit_code == 1 and result.stderr.startswith(
        "Error: --set: vae: VAE 'gone.safetensors': no such file"), result.stderr
    assert sweeps(settings.database_url) == 2


@pytest.mark.parametrize("body, key, words", [
    ('vae = "missing.safetensors"', "vae", "VAE 'missing.safetensors': no such file"),
    ('vae = "corrupt.safetensors"', "vae", "is not a safetensors file"),
    ('vae = "not-a-vae.safetensors"', "vae", "holds no VAE decoder"),
    ('vae = "old.pt"', "vae", "is a pickle file (.pt)"),
    ('[axes]\nx = { vae = ["", "missing.safetensors"] }', "axes.x.vae",
     "VAE 'missing.safetensors': no such file"),
])
def test_a_missing_or_corrupt_vae_is_one_plan_error_naming_the_key_and_nothing_is_recorded(
        settings, cli_env, tmp_path, body, key, words):
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x08" * 40)
    tiny_embedding(tmp_path / "not-a-vae.safetensors", 0)
    (tmp_path / "old.pt").write_bytes(b"pickle")
    job = write_job(tmp_path, JOB.format(prompt="a cat") + body + "\n")
    with pytest.raises(JobFileError) as caught:
        load_plan(settings, job)
    assert caught.value.key == key and words in caught.value.problem, str(caught.value)
    result = sdfarm(cli_env, "render", job, "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {job}: {key}: "), result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert sweeps(settings.database_url) == 0


def test_a_vae_of_another_family_is_a_plan_error(settings, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"decoder.conv_in.weight": torch.zeros(8, 16, 3, 3)}, tmp_path / "flux.safetensors")
    job = write_job(tmp_path, JOB.format(prompt="a cat") + 'vae = "flux.safetensors"\n')
    with pytest.raises(JobFileError, match=r"vae: VAE .*flux.safetensors.* decodes 16-channel "
                                           r"latents; a sd1 model makes 4-channel ones"):
        load_plan(settings, job)


# --- embeddings ------------------------------------------------------------------------------


def test_given_an_embedding_named_in_the_prompt_then_it_changes_the_pixels_and_is_recorded(
        settings, tiny_model, tmp_path):
    # Given an embedding "Sparkle" in the embedding folder, used in both prompts
    folder = tmp_path / "embeddings"
    emb = tiny_embedding(folder / "Sparkle.safetensors", 1)
    job = write_job(tmp_path, JOB.format(prompt="a cat, (sparkle:1.1)").replace(
        '"blurry"', '"blurry, SPARKLE"'))
    # When it renders with the folder, and without it (the word is then plain text)
    with_it = render(settings.with_(embedding_dir=folder), job)
    without = render(settings.with_(embedding_dir=tmp_path / "none"), job)
    # Then the embedding changed the pixels
    for a, b in zip(with_it, without, strict=True):
        assert not np.array_equal(pixels(a), pixels(b))
        assert a.key != b.key and b.ti_hashes == ""
    # And its hash is in the key and in the infotext, listed for each prompt as A1111 does
    digest = sha256_file(emb)[:12]
    assert with_it[0].ti_hashes == f"Sparkle: {digest}, Sparkle: {digest}"
    assert f'TI hashes: "Sparkle: {digest}, Sparkle: {digest}"' in infotext(with_it[0])
    spec = generation_from_infotext(parse_infotext(infotext(with_it[0]))).spec
    assert spec.ti_hashes == with_it[0].ti_hashes
    assert process_renderer(settings.with_(embedding_dir=folder)).embeddings.loads == {"Sparkle": 1}


def test_a_pass_without_an_embedding_renders_as_if_it_had_never_been_loaded(
        settings, tiny_model, tmp_path):
    # Given an embedding "spark": loaded, the tokenizer would split "sparkle" into it
    folder = tmp_path / "embeddings"
    tiny_embedding(folder / "spark.safetensors", 2)
    used = write_job(tmp_path, JOB.format(prompt="a cat, spark"), "used.toml")
    unused = write_job(tmp_path, JOB.format(prompt="a cat, sparkle"), "unused.toml")
    here = settings.with_(embedding_dir=folder)
    # When a pass that uses it renders, then one that does not, in the same process
    render(here, used)
    after = render(here, unused)
    assert after[0].ti_hashes == ""
    # Then the second pass's pixels are those of a process that never loaded it
    fresh = render(settings.with_(embedding_dir=tmp_path / "none"), unused)
    for a, b in zip(after, fresh, strict=True):
        assert np.array_equal(pixels(a), pixels(b))


def test_given_an_embedding_job_when_rerun_then_every_pixel_matches(settings, cli_env,
                                                                    tiny_model, tmp_path):
    folder = tmp_path / "embeddings"
    tiny_embedding(folder / "glow.safetensors", 3, vectors=3)
    env = {**cli_env, "SDFARM_EMBEDDING_DIR": str(folder)}
    job = write_job(tmp_path, JOB.format(prompt="a Glow lantern"))
    result = sdfarm(env, "render", job, "-q")
    assert result.exit_code == 0, result.output
    result = sdfarm(env, "rerun", 1)
    assert result.exit_code == 0, result.output
    assert "identical: every pixel matches the original" in result.output, result.output


def test_an_sdxl_embedding_loads_into_both_text_encoders_and_changes_the_pixels(
        settings, tmp_path):
    import torch

    # Given an SDXL embedding (one tensor per text encoder: builtin:tiny-sdxl's are 16 and 32
    # wide) used in the prompt of an SDXL model
    folder = tmp_path / "embeddings"
    emb = tiny_embedding(folder / "xlstyle.safetensors", 0, clip_l=torch.randn(2, 16),
                         clip_g=torch.randn(2, 32))
    job = write_job(tmp_path, JOB.format(prompt="a cat, xlstyle").replace(
        "builtin:tiny", "builtin:tiny-sdxl"))
    # When it renders with the embedding, and without it
    with_it = render(settings.with_(embedding_dir=folder), job)
    without = render(settings.with_(embedding_dir=tmp_path / "none"), job)
    # Then the pixels differ, and the hash is recorded
    assert not np.array_equal(pixels(with_it[0]), pixels(without[0]))
    assert with_it[0].ti_hashes == f"xlstyle: {sha256_file(emb)[:12]}"


@pytest.mark.parametrize("model, file, prompt, key, words", [
    ("builtin:tiny", "xl.safetensors", "a cat, xl", "prompt",
     "is an SDXL embedding (clip_l and clip_g)"),
    ("builtin:tiny-sdxl", "one.safetensors", "a cat, one", "prompt",
     "is not an embedding for SDXL: it needs tensors clip_g and clip_l, it holds emb_params"),
    ("builtin:tiny-flux", "one.safetensors", "a cat, one", "prompt",
     "textual inversion embeddings apply to SD 1.x, SD 2.x and SDXL models, not Flux.1-dev"),
    ("builtin:tiny", "old.pt", "a cat", "negative_prompt", "is a pickle file"),
])
def test_an_embedding_that_cannot_load_is_a_plan_error_naming_the_prompt(
        settings, tmp_path, model, file, prompt, key, words):
    import torch

    folder = tmp_path / "embeddings"
    if file.endswith(".pt"):
        folder.mkdir()
        (folder / file).write_bytes(b"pickle")
    elif file == "xl.safetensors":
        tiny_embedding(folder / file, 0, clip_l=torch.zeros(1, 32), clip_g=torch.zeros(1, 64))
    else:
        tiny_embedding(folder / file, 0)
    job = write_job(tmp_path, JOB.format(prompt=prompt).replace('"blurry"', '"blurry, old"')
                    .replace("builtin:tiny", model) + ("cfg = 3.5\n" if "flux" in model else ""))
    with pytest.raises(JobFileError) as caught:
        load_plan(settings.with_(embedding_dir=folder), job)
    assert caught.value.key == key and words in caught.value.problem, str(caught.value)
