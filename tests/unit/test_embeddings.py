"""Which embeddings a prompt uses, A1111's ``TI hashes`` and ``VAE hash``/``VAE`` (issue 11):
the pure planning side, on files made here (headers only matter)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from sdfarm.errors import ModelError
from sdfarm.metadata.a1111 import a1111_parameters
from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.scheduler.embeddings import (
    EmbeddingFolder,
    format_ti_hashes,
    parse_ti_hashes,
    pieces,
    spelled_as_loaded,
)
from sdfarm.scheduler.vaeref import family_problem, resolve_vae, vae_display_name
from sdfarm.spec import RenderSpec


def safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A .safetensors file with these float32 tensors (zeros)."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for n in shape:
            size *= n
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> EmbeddingFolder:
    for name in ("EasyNegative", "bad-hands-5", "bad", "spark"):
        safetensors(tmp_path / "emb" / f"{name}.safetensors", {"emb_params": [2, 8]})
    safetensors(tmp_path / "emb" / "sub" / "deep.safetensors", {"emb_params": [1, 8]})
    (tmp_path / "emb" / "notes.txt").write_text("not an embedding")
    return EmbeddingFolder.scan(tmp_path / "emb")


def names(folder: EmbeddingFolder, prompt: str) -> list[str]:
    return [folder.file(key).name for key in folder.used_in(prompt)]


@pytest.mark.parametrize("prompt, used", [
    ("a cat, easynegative", ["EasyNegative"]),
    ("(EASYNEGATIVE:1.2), a cat", ["EasyNegative"]),  # case and emphasis do not matter
    ("easynegatives, a sparkle", []),  # a name inside a longer word is no use
    ("bad-hands-5, bad anatomy", ["bad-hands-5", "bad"]),  # the longest name first
    ("a deep sea, spark", ["deep", "spark"]),  # subfolders too; in order of first use
    ("spark, spark and spark", ["spark"]),
    ("a cat <lora:spark:0.5>", []),  # a LoRA tag of the same name is not text
    ("", []),
])
def test_a_prompt_uses_the_embeddings_whose_names_it_writes_as_words(folder, prompt, used):
    assert names(folder, prompt) == used


def test_names_are_split_as_clips_tokenizer_splits_text():
    assert pieces("Bad-Hands_5 (x:1.2)") == ("bad", "-", "hands", "_", "5", "(", "x", ":", "1",
                                             ".", "2", ")")


def test_the_worker_writes_each_use_as_the_loaded_token_and_nothing_else():
    prompt = "EasyNegative, easynegatives, (easynegative:1.2) <lora:easynegative:1>"
    assert spelled_as_loaded(prompt, ["EasyNegative"]) == (
        "<easynegative>, easynegatives, (<easynegative>:1.2) <lora:easynegative:1>")
    assert spelled_as_loaded("a cat", []) == "a cat"
    assert spelled_as_loaded("a x:y cat", ["x:y"]) == "a <xy> cat"  # never a <tag:...>


def test_ti_hashes_are_written_and_read_as_a1111_does():
    text = format_ti_hashes([("easy:neg,ative", "c74b4e810b03"), ("bad", "6f35e7dd81aa")])
    assert text == "easynegative: c74b4e810b03, bad: 6f35e7dd81aa"
    assert parse_ti_hashes(text) == [("easynegative", "c74b4e810b03"), ("bad", "6f35e7dd81aa")]
    assert parse_ti_hashes("") == []


def test_a_pickle_or_an_ambiguous_name_is_a_reason_naming_the_files(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "old.pt").write_bytes(b"pickle")
    safetensors(tmp_path / "e" / "Twin.safetensors", {"emb_params": [1, 8]})
    safetensors(tmp_path / "e" / "x" / "twin.safetensors", {"emb_params": [1, 8]})
    folder = EmbeddingFolder.scan(tmp_path / "e")
    [old] = folder.used_in("old")
    with pytest.raises(ValueError, match="is a pickle file .* convert it to .safetensors"):
        folder.file(old)
    [twin] = folder.used_in("twin")
    with pytest.raises(ValueError, match="ambiguous"):
        folder.file(twin)
    assert EmbeddingFolder.scan(tmp_path / "absent").used_in("old twin") == []


# --- VAE -------------------------------------------------------------------------------------


def test_a_vae_file_is_checked_from_its_header(tmp_path):
    sd = safetensors(tmp_path / "sd.safetensors", {"decoder.conv_in.weight": [8, 4, 3, 3]})
    ckpt = safetensors(tmp_path / "cut.safetensors",
                       {"first_stage_model.decoder.conv_in.weight": [8, 16, 3, 3]})
    assert resolve_vae("sd.safetensors", tmp_path) == sd
    assert family_problem(sd, "sd.safetensors", "sdxl") is None
    assert "decodes 4-channel latents; a flux-dev model makes 16-channel" in family_problem(
        sd, "sd.safetensors", "flux-dev")
    assert family_problem(ckpt, "cut.safetensors", "sd3") is None
    (tmp_path / "v.vae.pt").write_bytes(b"x")
    for value, words in [("none.safetensors", "no such file"), ("v.vae.pt", "pickle"),
                         ("sd.ckpt.txt", "not a .safetensors file")]:
        with pytest.raises(ModelError, match=words):
            resolve_vae(value, tmp_path)


def test_vae_and_ti_hashes_are_written_where_a1111_writes_them_and_read_back():
    spec = RenderSpec(model="/m/dream.safetensors", model_hash="0123456789", prompt="a cat",
                      seed=1, clip_skip=2, vae="/vae/vae-ft-mse.safetensors",
                      vae_hash="735e4c3a44", ti_hashes="easyneg: c74b4e810b03")
    text = a1111_parameters(spec)
    assert ("Model hash: 0123456789, Model: dream, VAE hash: 735e4c3a44, "
            "VAE: vae-ft-mse.safetensors, Clip skip: 2") in text
    assert text.endswith('TI hashes: "easyneg: c74b4e810b03"')
    back = generation_from_infotext(parse_infotext(text)).spec
    assert (back.vae, back.vae_hash, back.ti_hashes) == (
        "vae-ft-mse.safetensors", "735e4c3a44", "easyneg: c74b4e810b03")
    assert vae_display_name("C:\\vae\\x.safetensors") == "x.safetensors"


def test_a_spec_without_vae_or_embeddings_keeps_its_key_and_with_them_it_changes():
    base = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, model_hash="0123456789")
    assert '"vae' not in base.key_text() and "ti_hashes" not in base.key_text()
    assert base.replace(vae_hash="735e4c3a44").key != base.key
    assert base.replace(ti_hashes="e: 0123456789ab").key != base.key
    # Two paths to one file are one VAE: the path itself does not enter the key
    assert base.replace(vae="/a/v.safetensors", vae_hash="735e4c3a44").key == base.replace(
        vae="/b/v.safetensors", vae_hash="735e4c3a44").key


# --- planning ---------------------------------------------------------------------------------


def plan_of(text: str, tmp_path: Path, embedding_dir: Path):
    from sdfarm.scheduler.jobfile import parse_job_file
    from sdfarm.scheduler.prepare import plan_job, resolve_model

    job = parse_job_file(text, str(tmp_path / "job.toml"))
    job, mref = resolve_model(job, tmp_path / "models")
    return plan_job(job, mref, tmp_path / "models", embedding_dir=embedding_dir)


def test_a_prompt_sr_axis_over_an_embedding_keys_each_cell_by_what_it_uses(folder, tmp_path):
    # Given a Prompt S/R axis swapping one embedding for another and for a plain word
    plan = plan_of('model = "builtin:tiny"\nprompt = "a cat, spark"\nseeds = [1, 2]\n'
                   '[axes]\nx = { prompt_sr = "spark, easynegative, glitter" }\n',
                   tmp_path, folder.folder)
    # Then each cell lists what its prompt uses, and no pass mixes embedding sets
    used = {s.prompt: s.ti_hashes.split(":")[0] for s in plan.specs}
    assert used == {"a cat, spark": "spark", "a cat, easynegative": "EasyNegative",
                    "a cat, glitter": ""}
    for batch in plan.batches:
        assert len({plan.specs[i].ti_hashes for i in batch}) == 1
    assert len(set(plan.keys)) == 6


def test_a_vae_axis_is_planned_with_each_files_hash_and_labelled_by_its_name(tmp_path):
    import hashlib

    a = safetensors(tmp_path / "a.safetensors", {"decoder.conv_in.weight": [8, 4, 3, 3]})
    safetensors(tmp_path / "b.safetensors", {"vae.decoder.conv_in.weight": [8, 4, 3, 3]})
    plan = plan_of('model = "builtin:tiny"\nprompt = "a cat"\nseeds = [1]\n'
                   '[axes]\nx = { vae = ["", "a.safetensors", "b.safetensors"] }\n',
                   tmp_path, tmp_path / "none")
    by_x = {cell.x: spec for cell, spec in zip(plan.cells, plan.specs)}
    assert [by_x[x].vae for x in range(3)] == ["", str(a), str(tmp_path / "b.safetensors")]
    assert by_x[1].vae_hash == hashlib.sha256(a.read_bytes()).hexdigest()[:10]
    assert plan.axes[0].labels == ("VAE: (model's own)", "VAE: a.safetensors",
                                   "VAE: b.safetensors")
    # The model's own VAE keeps the key a job file without vae had
    plain = plan_of('model = "builtin:tiny"\nprompt = "a cat"\nseeds = [1]\n', tmp_path,
                    tmp_path / "none")
    assert plan.keys[list(plan.specs).index(by_x[0])] == plain.keys[0]


def test_an_image_naming_its_vae_without_a_hash_keeps_the_name_as_written():
    text = ("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
            "Model: dream, VAE: mystery.safetensors")
    gen = generation_from_infotext(parse_infotext(text))
    assert (gen.spec.vae, gen.spec.vae_hash) == ("", "")
    assert gen.extra["VAE"] == "mystery.safetensors"
