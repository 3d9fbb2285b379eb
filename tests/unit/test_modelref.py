"""What a job file's ``model =`` may name, and the hash that identifies a model's weights."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from sdfarm.errors import ModelError
from sdfarm.modelref import (
    BUILTIN_MODELS,
    ModelRef,
    model_hash,
    parse_model_ref,
    weights_file,
)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


def make_diffusers_folder(path: Path, unet_bytes: bytes | None = None,
                          unet_name: str = "diffusion_pytorch_model.safetensors") -> Path:
    path.mkdir(parents=True)
    (path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    if unet_bytes is not None:
        (path / "unet").mkdir()
        (path / "unet" / unet_name).write_bytes(unet_bytes)
    return path


# --- the kinds of reference ---------------------------------------------------------------

def test_builtin_names_a_folder_in_the_model_dir_that_need_not_exist_yet(model_dir: Path) -> None:
    mref = parse_model_ref("builtin:tiny", model_dir)

    assert mref == ModelRef("builtin:tiny", "builtin", model_dir / "builtin-tiny", None)
    assert not mref.path.exists()


def test_every_builtin_model_parses(model_dir: Path) -> None:
    for name in BUILTIN_MODELS:
        assert parse_model_ref(f"builtin:{name}", model_dir).kind == "builtin"


def test_unknown_builtin_lists_the_known_ones(model_dir: Path) -> None:
    with pytest.raises(ModelError, match="builtin:tiny, builtin:sd15"):
        parse_model_ref("builtin:sdxl-turbo", model_dir)


def test_safetensors_file_relative_to_the_job_file_folder(tmp_path: Path, model_dir: Path) -> None:
    # Given a checkpoint beside the job file
    (tmp_path / "my-model.safetensors").write_bytes(b"weights")

    # When the job file names it relatively
    mref = parse_model_ref("my-model.safetensors", model_dir, base_dir=tmp_path)

    # Then it resolves against the job file's folder, not the current directory
    assert mref.kind == "file"
    assert mref.path == (tmp_path / "my-model.safetensors").resolve()
    assert mref.config is None


def test_missing_safetensors_file_is_an_error(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ModelError, match="no such file"):
        parse_model_ref("missing.safetensors", model_dir, base_dir=tmp_path)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickle_checkpoints_are_refused_with_the_way_to_opt_in(tmp_path: Path, model_dir: Path,
                                                               suffix: str) -> None:
    (tmp_path / f"model{suffix}").write_bytes(b"pickle")

    with pytest.raises(ModelError) as info:
        parse_model_ref(f"model{suffix}", model_dir, base_dir=tmp_path)

    message = str(info.value)
    assert "arbitrary code" in message
    assert "allow_pickle = true" in message
    assert ".safetensors" in message


def test_allow_pickle_opts_in_to_pickle_checkpoints(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "model.ckpt").write_bytes(b"pickle")

    mref = parse_model_ref("model.ckpt", model_dir, allow_pickle=True, base_dir=tmp_path)

    assert mref.kind == "file"
    assert mref.path == (tmp_path / "model.ckpt").resolve()


def test_diffusers_folder(tmp_path: Path, model_dir: Path) -> None:
    folder = make_diffusers_folder(tmp_path / "sd")

    mref = parse_model_ref(str(folder), model_dir)

    assert mref == ModelRef(str(folder), "folder", folder.resolve(), None)


def test_folder_without_model_index_is_not_a_diffusers_folder(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "loras").mkdir()

    with pytest.raises(ModelError, match="not a diffusers folder.*model_index.json"):
        parse_model_ref("./loras", model_dir, base_dir=tmp_path)


@pytest.mark.parametrize("ref", ["/no/such/folder", "./nowhere", "~/no-such-sdfarm-model", "../x"])
def test_path_that_does_not_exist_is_an_error(tmp_path: Path, model_dir: Path, ref: str) -> None:
    with pytest.raises(ModelError, match="no such file or folder"):
        parse_model_ref(ref, model_dir, base_dir=tmp_path)


@pytest.mark.parametrize("ref", ["runwayml/stable-diffusion-v1-5", "stabilityai/sd-turbo",
                                 "Lykon/dreamshaper_8"])
def test_hub_repo_id(tmp_path: Path, model_dir: Path, ref: str) -> None:
    assert parse_model_ref(ref, model_dir, base_dir=tmp_path) == ModelRef(ref, "hub", None, None)


@pytest.mark.parametrize("ref", ["", "sd15", "a/b/c", "owner/", "owner/na me", "http://x/y", "a--b/c"])
def test_malformed_reference_says_what_is_accepted(tmp_path: Path, model_dir: Path, ref: str) -> None:
    with pytest.raises(ModelError) as info:
        parse_model_ref(ref, model_dir, base_dir=tmp_path)

    message = str(info.value)
    for form in ("builtin:tiny", "builtin:sd15", "runwayml/stable-diffusion-v1-5", "diffusers folder",
                 ".safetensors"):
        assert form in message


# --- model_config -------------------------------------------------------------------------

def test_model_config_gives_a_single_file_its_diffusers_folder(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"w")
    make_diffusers_folder(tmp_path / "sd15-config")

    mref = parse_model_ref("m.safetensors", model_dir, model_config="sd15-config", base_dir=tmp_path)

    assert mref.config == (tmp_path / "sd15-config").resolve()


def test_model_config_must_be_a_diffusers_folder(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"w")
    (tmp_path / "empty").mkdir()

    with pytest.raises(ModelError, match="model_config.*model_index.json"):
        parse_model_ref("m.safetensors", model_dir, model_config="empty", base_dir=tmp_path)


@pytest.mark.parametrize("ref", ["builtin:tiny", "runwayml/stable-diffusion-v1-5", "./sd"])
def test_model_config_is_refused_for_models_that_carry_their_own(tmp_path: Path, model_dir: Path,
                                                                 ref: str) -> None:
    make_diffusers_folder(tmp_path / "sd")
    make_diffusers_folder(tmp_path / "config")

    with pytest.raises(ModelError, match="model_config applies only to a single-file"):
        parse_model_ref(ref, model_dir, model_config="config", base_dir=tmp_path)


# --- weights and hashes -------------------------------------------------------------------

def test_weights_file_of_a_folder_is_its_unet(tmp_path: Path, model_dir: Path) -> None:
    fp16 = "diffusion_pytorch_model.fp16.safetensors"
    folder = make_diffusers_folder(tmp_path / "sd", b"unet", unet_name=fp16)

    mref = parse_model_ref(str(folder), model_dir)

    assert weights_file(mref) == folder.resolve() / "unet" / "diffusion_pytorch_model.fp16.safetensors"


def test_builtin_not_built_yet_has_no_weights_and_no_hash(model_dir: Path) -> None:
    mref = parse_model_ref("builtin:tiny", model_dir)

    assert weights_file(mref) is None
    assert model_hash(mref, model_dir) is None


def test_hash_is_the_first_10_hex_of_the_sha256(tmp_path: Path, model_dir: Path) -> None:
    # Given a checkpoint over one hashing chunk long
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "m.safetensors").write_bytes(data)
    mref = parse_model_ref("m.safetensors", model_dir, base_dir=tmp_path)

    # Then its hash is AUTOMATIC1111's short hash, as shown in its UI and PNG infotext
    assert model_hash(mref, model_dir) == hashlib.sha256(data).hexdigest()[:10]


def test_hash_of_a_folder_is_the_hash_of_its_unet_weights(tmp_path: Path, model_dir: Path) -> None:
    folder = make_diffusers_folder(tmp_path / "sd", b"unet weights")

    assert model_hash(parse_model_ref(str(folder), model_dir), model_dir) == \
        hashlib.sha256(b"unet weights").hexdigest()[:10]


def test_hash_is_cached_by_real_path_size_and_mtime(tmp_path: Path, model_dir: Path) -> None:
    # Given a hashed checkpoint
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"first")
    mref = parse_model_ref(str(path), model_dir)
    model_hash(mref, model_dir)

    # When the cache says something else for the same size and mtime
    cache_file = model_dir / "hashes.json"
    cache = json.loads(cache_file.read_text())
    entry = cache[os.path.realpath(path)]
    assert entry["size"] == 5
    entry["sha256"] = "c0ffee" * 10
    cache_file.write_text(json.dumps(cache))

    # Then the cache is believed: the file is not read again
    assert model_hash(mref, model_dir) == "c0ffeec0ff"


def test_changed_file_is_hashed_again(tmp_path: Path, model_dir: Path) -> None:
    # Given a hashed checkpoint
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"first")
    mref = parse_model_ref(str(path), model_dir)
    assert model_hash(mref, model_dir) == hashlib.sha256(b"first").hexdigest()[:10]

    # When it is replaced by a file of the same size
    path.write_bytes(b"other")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    # Then the new content is hashed
    assert model_hash(mref, model_dir) == hashlib.sha256(b"other").hexdigest()[:10]


def test_touched_file_is_hashed_again(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"same")
    mref = parse_model_ref(str(path), model_dir)
    model_hash(mref, model_dir)
    cache_file = model_dir / "hashes.json"
    cache = json.loads(cache_file.read_text())
    cache[os.path.realpath(path)]["sha256"] = "0" * 64
    cache_file.write_text(json.dumps(cache))

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    assert model_hash(mref, model_dir) == hashlib.sha256(b"same").hexdigest()[:10]


def test_two_paths_to_one_file_share_a_cache_entry(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"w")
    (tmp_path / "link.safetensors").symlink_to(tmp_path / "m.safetensors")

    first = model_hash(parse_model_ref(str(tmp_path / "m.safetensors"), model_dir), model_dir)
    second = model_hash(parse_model_ref(str(tmp_path / "link.safetensors"), model_dir), model_dir)

    assert first == second
    assert len(json.loads((model_dir / "hashes.json").read_text())) == 1


@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", ""])
def test_corrupt_hash_cache_is_rebuilt(tmp_path: Path, model_dir: Path, garbage: str) -> None:
    model_dir.mkdir()
    (model_dir / "hashes.json").write_text(garbage)
    (tmp_path / "m.safetensors").write_bytes(b"w")

    digest = model_hash(parse_model_ref(str(tmp_path / "m.safetensors"), model_dir), model_dir)

    assert digest == hashlib.sha256(b"w").hexdigest()[:10]
    assert isinstance(json.loads((model_dir / "hashes.json").read_text()), dict)


def test_hub_model_is_hashed_from_the_hf_cache_without_network(tmp_path: Path, model_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # Given a Hugging Face cache holding one snapshot of owner/model
    cache = tmp_path / "hf"
    repo = cache / "models--owner--model"
    commit = "a" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    unet = repo / "snapshots" / commit / "unet"
    unet.mkdir(parents=True)
    (unet / "diffusion_pytorch_model.safetensors").write_bytes(b"cached unet")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    # Then the cached one is hashed, and a repo not in the cache has no hash
    cached = parse_model_ref("owner/model", model_dir)
    assert model_hash(cached, model_dir) == hashlib.sha256(b"cached unet").hexdigest()[:10]
    assert model_hash(parse_model_ref("owner/other", model_dir), model_dir) is None
