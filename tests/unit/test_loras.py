"""LoRA tags, the LoRA set, its hashes and the LoRA axes, planned without torch (issue 11)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from sdfarm.errors import JobFileError
from sdfarm.metadata.a1111 import a1111_parameters
from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.modelref import parse_model_ref
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.loras import (
    LoraError,
    LoraFolder,
    LoraUse,
    addnet_hash,
    canonical_set,
    find_lora,
    lora_fields,
    lora_hash,
    lora_uses,
    parse_hashes,
    parse_set,
    set_weight,
)
from sdfarm.scheduler.prepare import plan_job
from sdfarm.spec import RenderSpec


def safetensors_file(path: Path, payload: bytes, metadata: dict[str, str] | None = None) -> Path:
    """A valid safetensors file holding one uint8 tensor of ``payload``."""
    header: dict[str, object] = {"w": {"dtype": "U8", "shape": [len(payload)],
                                       "data_offsets": [0, len(payload)]}}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)
    return path


@pytest.fixture
def lora_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "loras"
    safetensors_file(folder / "ghibli.safetensors", b"ghibli weights")
    safetensors_file(folder / "styles" / "pixel.safetensors", b"pixel weights")
    return folder


# --- tags and the LoRA set ----------------------------------------------------------------

def test_tags_give_the_loras_in_prompt_order_with_weight_1_by_default():
    uses = lora_uses("a cat, <lora:ghibli:0.8>, <lora:pixel>, at dusk")
    assert uses == [LoraUse("ghibli", 0.8), LoraUse("pixel", 1.0)]
    assert lora_uses("a cat at dusk") == []


def test_the_set_is_sorted_by_name_so_tag_order_does_not_split_a_pass():
    a = canonical_set(lora_uses("<lora:pixel:1> a cat <lora:ghibli:0.5>"))
    b = canonical_set(lora_uses("<lora:ghibli:0.5> a cat <lora:pixel:1.0>"))
    assert a == b == "ghibli:0.5,pixel:1"
    assert parse_set(a) == [LoraUse("ghibli", 0.5), LoraUse("pixel", 1.0)]


@pytest.mark.parametrize("prompt, fragment", [
    ("a <hypernet:foo:1>", "<hypernet:...> tags are not supported"),
    ("a <lora:x:strong>", "weight 'strong' is not a number"),
    ("a <lora:x:1e9>", "must be a number from -100 to 100"),
    ("a <lora:x:1> b <lora:x:0.5>", "appears twice"),
    ("a <lora:x:1:0.5>", "only <lora:name> and <lora:name:weight>"),
    ("a <lora:../x:1>", "is not a LoRA name"),
])
def test_a_tag_sdfarm_cannot_apply_is_an_error_naming_it(prompt, fragment):
    with pytest.raises(LoraError) as caught:
        lora_uses(prompt)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("<")  # names the tag as written


def test_a_weight_is_rewritten_where_the_tag_stands_or_appended():
    assert set_weight("a <lora:ghibli:0.8>, cat", "ghibli", 0.25) == "a <lora:ghibli:0.25>, cat"
    assert set_weight("a <lora:pixel:1>", "ghibli", 1.0) == "a <lora:pixel:1> <lora:ghibli:1>"


# --- files and hashes ---------------------------------------------------------------------

def test_the_hash_is_a1111s_addnet_hash_of_the_bytes_after_the_header(tmp_path):
    # Given two files with the same tensors but different metadata
    a = safetensors_file(tmp_path / "a.safetensors", b"same tensors")
    b = safetensors_file(tmp_path / "b.safetensors", b"same tensors", {"ss_output_name": "b"})
    # Then their hash is the sha256 of the tensor bytes, first 12 hex digits, for both
    expected = hashlib.sha256(b"same tensors").hexdigest()
    assert addnet_hash(a) == addnet_hash(b) == expected
    assert lora_hash(a) == expected[:12]
    # And not the whole file's sha256 (what A1111 hashes checkpoints with)
    assert expected != hashlib.sha256(a.read_bytes()).hexdigest()


def test_a_name_is_found_in_the_folder_or_below_it(lora_dir):
    assert find_lora(lora_dir, "ghibli") == lora_dir / "ghibli.safetensors"
    assert find_lora(lora_dir, "pixel") == lora_dir / "styles" / "pixel.safetensors"


def test_a_missing_lora_names_itself_and_the_folder_searched(lora_dir):
    with pytest.raises(LoraError) as caught:
        find_lora(lora_dir, "nope")
    assert "LoRA 'nope' not found" in str(caught.value) and str(lora_dir) in str(caught.value)


def test_a_pickle_lora_is_refused_as_a_pickle_checkpoint_is(lora_dir):
    (lora_dir / "old.pt").write_bytes(b"pickle")
    with pytest.raises(LoraError, match="is a pickle file .*Convert it to .safetensors"):
        find_lora(lora_dir, "old")


def test_lora_hashes_are_written_as_a1111_writes_them_and_read_back(lora_dir):
    fields = lora_fields("a cat <lora:pixel:0.5> <lora:ghibli:1>", LoraFolder(lora_dir).hash_of)
    pixel = hashlib.sha256(b"pixel weights").hexdigest()[:12]
    ghibli = hashlib.sha256(b"ghibli weights").hexdigest()[:12]
    assert fields.loras == "ghibli:1,pixel:0.5"
    assert fields.lora_hashes == f"pixel: {pixel}, ghibli: {ghibli}"  # prompt order
    assert parse_hashes(fields.lora_hashes) == {"pixel": pixel, "ghibli": ghibli}
    # Written into the settings line quoted, as A1111 quotes a value with colons
    spec = RenderSpec(model="builtin:tiny", prompt="a cat <lora:pixel:0.5> <lora:ghibli:1>",
                      seed=1, loras=fields.loras, lora_hashes=fields.lora_hashes)
    text = a1111_parameters(spec)
    assert f'Lora hashes: "pixel: {pixel}, ghibli: {ghibli}"' in text
    # And an image's text gives the same fields back
    read = generation_from_infotext(parse_infotext(text)).spec
    assert (read.loras, read.lora_hashes) == (fields.loras, fields.lora_hashes)


# --- key and batch group ------------------------------------------------------------------

def test_the_lora_set_and_hashes_enter_the_key_and_the_set_the_batch_group():
    base = RenderSpec(model="builtin:tiny", prompt="a cat <lora:x:0.5>", seed=1)
    with_set = base.replace(loras="x:0.5", lora_hashes="x: 0123456789ab")
    other_file = with_set.replace(lora_hashes="x: ba9876543210")
    assert len({base.key, with_set.key, other_file.key}) == 3
    assert with_set.batch_group != with_set.replace(loras="x:1").batch_group
    assert with_set.batch_group == other_file.replace(prompt="a dog <lora:x:0.5>").batch_group


# --- planning -----------------------------------------------------------------------------

def plan(text: str, tmp_path: Path, lora_dir: Path):
    job = parse_job_file('model = "builtin:tiny"\nsteps = 2\nwidth = 64\nheight = 64\n' + text,
                         str(tmp_path / "job.toml"))
    mref = parse_model_ref(job.base.model, tmp_path / "models")
    return plan_job(job, mref, tmp_path / "models", lora_dir)


def test_a_weight_axis_rewrites_the_prompts_tag_and_sets_each_cells_lora_set(tmp_path, lora_dir):
    p = plan('prompt = "a cat <lora:ghibli:0.8>"\nseeds = [1, 2]\n[axes]\n'
             'x = { lora_weight = { name = "ghibli", values = "0-1 (+0.25)" } }\n',
             tmp_path, lora_dir)
    assert p.axes[0].labels == ("ghibli: 0", "ghibli: 0.25", "ghibli: 0.5", "ghibli: 0.75",
                                "ghibli: 1")
    assert [s.prompt for s in p.rows] == [f"a cat <lora:ghibli:{w}>"
                                          for w in ("0", "0.25", "0.5", "0.75", "1")]
    assert [s.loras for s in p.rows] == [f"ghibli:{w}" for w in ("0", "0.25", "0.5", "0.75", "1")]
    ghibli = hashlib.sha256(b"ghibli weights").hexdigest()[:12]
    assert {s.lora_hashes for s in p.rows} == {f"ghibli: {ghibli}"}
    # One pass per weight, both seeds in it
    assert list(p.batches) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]


def test_a_lora_name_axis_adds_each_lora_and_none_adds_nothing(tmp_path, lora_dir):
    p = plan('prompt = "a cat"\nseeds = [1]\n[axes]\nx = { lora = "none, ghibli, pixel:0.5" }\n',
             tmp_path, lora_dir)
    assert p.axes[0].labels == ("LoRA: none", "LoRA: ghibli", "LoRA: pixel:0.5")
    assert sorted((s.prompt, s.loras) for s in p.rows) == [
        ("a cat", ""), ("a cat <lora:ghibli:1>", "ghibli:1"),
        ("a cat <lora:pixel:0.5>", "pixel:0.5")]


def test_prompt_sr_over_a_lora_tag_swaps_the_lora(tmp_path, lora_dir):
    p = plan('prompt = "a cat <lora:ghibli:0.5>"\nseeds = [1]\n[axes]\n'
             'x = { prompt_sr = ["<lora:ghibli:0.5>", "<lora:pixel:0.5>", ""] }\n',
             tmp_path, lora_dir)
    assert sorted((s.prompt, s.loras) for s in p.rows) == [
        ("a cat ", ""), ("a cat <lora:ghibli:0.5>", "ghibli:0.5"),
        ("a cat <lora:pixel:0.5>", "pixel:0.5")]


def test_prompt_sr_and_a_weight_axis_compose_in_one_cell(tmp_path, lora_dir):
    p = plan('prompt = "a cat <lora:ghibli:1>"\nseeds = [1]\n[axes]\n'
             'x = { prompt_sr = ["cat", "dog"] }\n'
             'y = { lora_weight = { name = "ghibli", values = [0.5, 1] } }\n', tmp_path, lora_dir)
    assert sorted(s.prompt for s in p.rows) == [
        "a cat <lora:ghibli:0.5>", "a cat <lora:ghibli:1>",
        "a dog <lora:ghibli:0.5>", "a dog <lora:ghibli:1>"]


def test_a_missing_lora_is_a_plan_time_error_naming_it_and_the_folder(tmp_path, lora_dir):
    with pytest.raises(JobFileError) as caught:
        plan('prompt = "a cat <lora:nope:0.5>"\n', tmp_path, lora_dir)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'job.toml'}: prompt: LoRA 'nope' not found")
    assert str(lora_dir) in message


def test_a_missing_lora_from_an_axis_names_the_axis(tmp_path, lora_dir):
    with pytest.raises(JobFileError) as caught:
        plan('prompt = "a cat"\n[axes]\nx = { lora = "ghibli, nope" }\n', tmp_path, lora_dir)
    assert ": axes.x.lora: LoRA 'nope' not found" in str(caught.value)


@pytest.mark.parametrize("axis, fragment", [
    ('x = { lora_weight = "0-1" }', 'must be a table { name = "NAME", values = ... }'),
    ('x = { lora_weight = { name = "a/b", values = [1] } }', "is not a LoRA name"),
    ('x = { lora_weight = { name = "a", values = "0-x" } }', "is not a value or a range"),
    ('x = { lora = "ghibli:heavy" }', "weight 'heavy' is not a number"),
    ('x = { lora_weight = { name = "a", values = [1] } }\n'
     'y = { lora_weight = { name = "a", values = [2] } }', "already varied by axes.x"),
])
def test_a_bad_lora_axis_is_a_one_line_error_naming_the_axis(axis, fragment):
    with pytest.raises(JobFileError) as caught:
        parse_job_file(f'model = "builtin:tiny"\nprompt = "a cat"\n[axes]\n{axis}\n', "g.toml")
    assert str(caught.value).startswith("g.toml: axes.") and fragment in str(caught.value)


def test_plan_lists_each_lora_with_its_hash_and_images(tmp_path, lora_dir):
    from click.testing import CliRunner

    from sdfarm.cli.main import cli

    job = tmp_path / "job.toml"
    job.write_text('model = "builtin:tiny"\nprompt = "a cat <lora:ghibli:0.5>"\nseeds = [1, 2]\n'
                   '[axes]\nx = { lora = "none, pixel" }\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["plan", str(job)], env={
        "SDFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}",
        "SDFARM_MODEL_DIR": str(tmp_path / "models"), "SDFARM_LORA_DIR": str(lora_dir)})
    assert result.exit_code == 0, result.output
    ghibli = hashlib.sha256(b"ghibli weights").hexdigest()[:12]
    pixel = hashlib.sha256(b"pixel weights").hexdigest()[:12]
    assert f"  loras:\n    ghibli ({ghibli}): 4 images\n    pixel ({pixel}): 2 images\n" \
        in result.output
    assert not (tmp_path / "none.db").exists()
