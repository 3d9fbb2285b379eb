"""Model references: what a job file's ``model =`` names, where its weights are, and their hash.

Pure: the standard library only (huggingface_hub is imported inside :func:`weights_file`, for
hub models, and only to look in its cache), so planning a sweep never imports torch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sdfarm.errors import ModelError
from sdfarm.files import write_atomic

#: Built-in random-weight models, built offline on first use (``sdfarm.worker.builtin``).
BUILTIN_MODELS: dict[str, str] = {
    "tiny": "SD 1.x architecture at toy size, random weights, a few MB: tests and demos on a CPU",
    "sd15": "the full SD 1.5 architecture, random weights, ~2 GB in float16: GPU benchmarks",
    "tiny-sd2v": "SD 2.x v-prediction architecture at toy size, random weights: tests",
    "tiny-sdxl": "SDXL architecture at toy size, random weights, a few MB: tests and demos",
    "sdxl": "the full SDXL architecture, random weights, ~7 GB in float16: GPU benchmarks",
    "tiny-flux": "Flux.1-dev architecture at toy size, random weights: tests and demos",
    "tiny-sd3": "SD 3.5 architecture at toy size, random weights: tests and demos",
}

#: The family (``sdfarm.families``) and prediction type of each built-in model, known without
#: building it, so planning never needs its files.
BUILTIN_FAMILIES: dict[str, tuple[str, str]] = {
    "tiny": ("sd1", "epsilon"),
    "sd15": ("sd1", "epsilon"),
    "tiny-sd2v": ("sd2", "v"),
    "tiny-sdxl": ("sdxl", "epsilon"),
    "sdxl": ("sdxl", "epsilon"),
    "tiny-flux": ("flux-dev", "flow"),
    "tiny-sd3": ("sd3", "flow"),
}

#: Single-file checkpoints in the safe format.
SAFE_SUFFIXES = frozenset({".safetensors"})
#: Pickle checkpoints: loading one runs whatever code its author put in it.
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})

#: Where a diffusers folder keeps its denoiser's weights (the UNet; Flux's and SD 3's
#: transformer), in the order diffusers itself prefers them. A sharded transformer (Flux.1's
#: 23 GB) is identified by its first shard.
UNET_WEIGHTS = (
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "transformer/diffusion_pytorch_model.safetensors",
    "transformer/diffusion_pytorch_model.fp16.safetensors",
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
    "transformer/diffusion_pytorch_model-00001-of-00003.safetensors",
)

#: Hashing reads this much at a time: checkpoints are 2-7 GB and must not be read into memory.
HASH_CHUNK = 1 << 20

#: Hugging Face's own rule for repo ids: ``owner/name``, letters, digits, ``-``, ``_``, ``.``.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")

ACCEPTED = (
    f"a built-in model ({', '.join('builtin:' + n for n in BUILTIN_MODELS)}), a Hugging Face "
    f"repo id like runwayml/stable-diffusion-v1-5, a diffusers folder (with model_index.json) "
    f"or a .safetensors file"
)

ModelKind = Literal["builtin", "file", "folder", "hub"]


@dataclass(frozen=True)
class ModelRef:
    """A resolved ``model =``: what kind of model it is and where it lives on this machine."""

    #: As the user wrote it, e.g. ``"builtin:tiny"``: shown in messages and stored on jobs.
    ref: str
    kind: ModelKind
    #: builtin: its folder in the model dir (built on first use, so it may not exist yet);
    #: file and folder: the resolved path; hub: ``None`` (the HF cache decides).
    path: Path | None
    #: For a single file: a local diffusers folder holding the pipeline's configs, else ``None``.
    config: Path | None = None


def parse_model_ref(ref: str, model_dir: Path, *, model_config: str | None = None,
                    allow_pickle: bool = False, base_dir: Path | None = None) -> ModelRef:
    """Resolve what a job file's ``model =`` names, without loading anything.

    Relative paths are resolved against ``base_dir`` (the job file's folder; the current
    directory when ``None``).
    """
    base = Path.cwd() if base_dir is None else base_dir
    mref = _parse(ref, model_dir, allow_pickle=allow_pickle, base=base)
    if model_config is None:
        return mref
    if mref.kind != "file":
        raise ModelError(
            f"model_config applies only to a single-file checkpoint (.safetensors); "
            f"model {ref!r} is a {mref.kind} model and carries its own config: remove model_config"
        )
    return ModelRef(ref, "file", mref.path, _config_folder(model_config, base))


def _parse(ref: str, model_dir: Path, *, allow_pickle: bool, base: Path) -> ModelRef:
    text = ref.strip()
    if not text:
        raise ModelError(f"model is empty; accepted: {ACCEPTED}")
    if text.startswith("builtin:"):
        name = text.removeprefix("builtin:")
        if name not in BUILTIN_MODELS:
            known = ", ".join(f"builtin:{n}" for n in BUILTIN_MODELS)
            raise ModelError(f"unknown built-in model {ref!r}; the built-in models are {known}")
        return ModelRef(ref, "builtin", model_dir / f"builtin-{name}")

    if "\x00" in text:
        raise ModelError(f"model {ref!r} contains a NUL character; no file name can")
    try:
        return _parse_path(ref, text, allow_pickle, base)
    except OSError as exc:  # a path the system refuses: too long, a component too long, ...
        raise ModelError(f"model {ref!r}: {exc.strerror or exc}") from None


def _parse_path(ref: str, text: str, allow_pickle: bool, base: Path) -> ModelRef:
    path = _resolve(text, base)
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES | PICKLE_SUFFIXES:
        if not path.is_file():
            raise ModelError(f"model {ref!r}: no such file {str(path)!r}")
        if suffix in PICKLE_SUFFIXES and not allow_pickle:
            raise ModelError(
                f"model {ref!r} is a pickle checkpoint ({suffix}); loading one can run arbitrary "
                f"code hidden in it. Convert it to .safetensors, or, if you trust its source, "
                f"set allow_pickle = true in the job file"
            )
        return ModelRef(ref, "file", path)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"model {ref!r}: {str(path)!r} is a folder but not a diffusers folder "
                f"(no model_index.json); accepted: {ACCEPTED}"
            )
        return ModelRef(ref, "folder", path)
    if path.exists():
        raise ModelError(f"model {ref!r}: {str(path)!r} is not a model file; accepted: {ACCEPTED}")
    if _looks_like_path(text):
        raise ModelError(f"model {ref!r}: no such file or folder {str(path)!r}")
    if _HUB_ID.match(text) and "--" not in text and ".." not in text:
        return ModelRef(ref, "hub", None)
    raise ModelError(f"model {ref!r} is not a model reference; accepted: {ACCEPTED}")


def _resolve(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~", "\\")) or text in (".", "..")


def _config_folder(model_config: str, base: Path) -> Path:
    path = _resolve(model_config, base)
    if not (path / "model_index.json").is_file():
        raise ModelError(
            f"model_config {model_config!r} must be a local diffusers folder with a "
            f"model_index.json (for SD 1.5, a download of runwayml/stable-diffusion-v1-5 "
            f"without its weights will do); {str(path)!r} is not one"
        )
    return path


def weights_file(mref: ModelRef) -> Path | None:
    """The file whose hash identifies the model: the checkpoint, or the denoiser of a pipeline.

    ``None`` when it is not on this machine (a builtin not built yet, a hub model not cached).
    Never touches the network.
    """
    if mref.kind == "file":
        return mref.path
    if mref.kind == "hub":
        return _cached_hub_unet(mref.ref)
    assert mref.path is not None
    for name in UNET_WEIGHTS:
        candidate = mref.path / name
        if candidate.is_file():
            return candidate
    return None


def _cached_hub_unet(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # a planning-only install: nothing can be cached then
        return None
    for name in UNET_WEIGHTS:
        found = try_to_load_from_cache(repo_id, name)
        # It also returns a sentinel meaning "known not to exist upstream": not a path.
        if isinstance(found, str):
            return Path(found)
    return None


def hub_offline_by_env() -> bool:
    """Whether the environment forbids downloads from the Hugging Face hub (read each time:
    huggingface_hub reads it once, at import, and a worker's environment may be set later)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def cached_hub_folder(repo_id: str) -> Path | None:
    """The snapshot folder of a hub model in the Hugging Face cache (where its
    ``model_index.json`` is), or ``None`` when it is not cached here. Never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # a planning-only install: nothing can be cached then
        return None
    found = try_to_load_from_cache(repo_id, "model_index.json")
    return Path(found).parent if isinstance(found, str) else None


def model_hash(mref: ModelRef, model_dir: Path) -> str | None:
    """AUTOMATIC1111's short hash (AutoV2): the first 10 hex digits of the weights' sha256.

    Hashing a 4 GB checkpoint takes seconds, so hashes are cached in ``model_dir/hashes.json``
    by real path, size and mtime. ``None`` when the weights are not on this machine.
    """
    path = weights_file(mref)
    if path is None:
        return None
    try:
        os.stat(os.path.realpath(path))
    except OSError:
        return None
    return cached_sha256(path, model_dir)[:10]


def cached_sha256(path: Path, model_dir: Path) -> str:
    """Hex sha256 of a file, cached in ``model_dir/hashes.json`` by real path, size and mtime
    (model weights, VAEs, embeddings). :class:`OSError` when it cannot be read."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    cache_file = model_dir / "hashes.json"
    entry = _read_cache(cache_file).get(real)
    if (isinstance(entry, dict) and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns and isinstance(entry.get("sha256"), str)):
        return entry["sha256"]
    digest = sha256_file(Path(real))
    _remember(cache_file, real, {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest})
    return digest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def _read_cache(cache_file: Path) -> dict[str, object]:
    # A corrupt or foreign cache costs a rehash, never a failed job.
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(cache_file: Path, key: str, entry: dict[str, object]) -> None:
    # Several workers may hash at once: read-modify-write under a lock so none loses another's
    # entry, and replace atomically so a reader never sees half a file. A model dir we cannot
    # write to only means hashing again next time.
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with open(cache_file.with_name(cache_file.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cache = _read_cache(cache_file)
            cache[key] = entry
            # Readable by all: other users' workers read it.
            write_atomic(cache_file, json.dumps(cache, indent=1, sort_keys=True).encode(),
                         mode=0o644)
    except OSError:
        pass
