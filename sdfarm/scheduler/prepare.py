"""From a job file on disk to a Plan: validate, resolve the model reference, expand. Pure
(no torch): ``sdfarm plan`` runs exactly this."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sdfarm.errors import FamilyUnknown, JobFileError, ModelError
from sdfarm.families import FAMILIES
from sdfarm.modeldetect import Detection, detect_file, detect_folder
from sdfarm.modelref import (
    BUILTIN_FAMILIES,
    SAFE_SUFFIXES,
    ModelRef,
    cached_hub_folder,
    hub_offline_by_env,
    model_hash,
    parse_model_ref,
)
from sdfarm.scheduler.axes import Axis
from sdfarm.scheduler.extrafiles import ExtraFiles, resolve_vae_paths
from sdfarm.scheduler.initimage import resolve_init_image
from sdfarm.scheduler.jobfile import JobFile
from sdfarm.scheduler.loras import LoraFolder
from sdfarm.scheduler.plan import Plan, make_plan


def resolve_model(job: JobFile, model_dir: Path) -> tuple[JobFile, ModelRef]:
    """The job with its model reference made absolute (relative paths are relative to the job
    file), so that any worker finds the same model."""
    try:
        mref = parse_model_ref(job.base.model, model_dir, model_config=_abs(job, job.model_config),
                               allow_pickle=job.allow_pickle, base_dir=Path(job.path).parent)
    except ModelError as exc:
        raise JobFileError(job.path, "model", str(exc)) from None
    model = str(mref.path) if mref.kind in ("file", "folder") else job.base.model
    config = str(mref.config) if mref.config else None
    axes = tuple(_resolve_model_axis(job, a, model_dir) for a in job.axes)
    job = resolve_init_image(job)  # issue 11: img2img
    job = dataclasses.replace(job, base=job.base.replace(model=model), model_config=config,
                              axes=axes)
    return resolve_vae_paths(job), mref  # issue 11, VAE: made absolute and checked, as models


def _resolve_model_axis(job: JobFile, axis: Axis, model_dir: Path) -> Axis:
    # A model axis's values are made absolute like ``model``; their labels stay as written.
    if axis.param != "model":
        return axis
    return dataclasses.replace(axis, values=tuple(
        _axis_model_ref(job, axis, v, model_dir)[0] for v in axis.values))


def _axis_model_ref(job: JobFile, axis: Axis, value: str, model_dir: Path) -> tuple[str, ModelRef]:
    base = Path(job.path).parent
    try:
        mref = parse_model_ref(value, model_dir, allow_pickle=job.allow_pickle, base_dir=base)
        if mref.kind == "file" and job.model_config:
            # model_config describes single-file checkpoints; the other kinds carry their own.
            mref = parse_model_ref(value, model_dir, model_config=job.model_config,
                                   allow_pickle=job.allow_pickle, base_dir=base)
    except ModelError as exc:
        raise JobFileError(job.path, axis.key, str(exc)) from None
    return (str(mref.path) if mref.kind in ("file", "folder") else value), mref


def _abs(job: JobFile, path: str | None) -> str | None:
    if path is None:
        return None
    return str((Path(job.path).parent / Path(path).expanduser()).resolve())


def plan_job(job: JobFile, mref: ModelRef, model_dir: Path,
             lora_dir: Path | None = None, embedding_dir: Path | None = None) -> Plan:
    """Expand; the model hash enters each job's key when the weights are on this machine, and
    each model's family (detected from its files) sets the defaults of its images. The LoRAs
    the prompts name are looked up in ``lora_dir`` (default: ``loras/`` beside ``model_dir``)
    and their hashes enter the keys; a missing one is an error naming it and the folder. The
    VAE's and the embeddings' hashes (``embedding_dir``: default ``model_dir/embeddings``)
    enter the keys of the images that use them."""
    hashes: dict[str, str | None] = {}
    configs: dict[str, str | None] = {}
    families = {job.base.model: _family(job, mref, "model")}
    for axis in job.axes:
        if axis.param == "model":
            for value in axis.values:
                _, axis_ref = _axis_model_ref(job, axis, value, model_dir)
                hashes[value] = model_hash(axis_ref, model_dir)
                configs[value] = str(axis_ref.config) if axis_ref.config else None
                families[value] = _family(job, axis_ref, axis.key)
    known = {m: (d.family, d.prediction) for m, d in families.items() if d is not None}
    loras = LoraFolder(lora_dir if lora_dir is not None else model_dir.parent / "loras",
                       model_dir / "hashes.json")
    extra = ExtraFiles.for_job(job, model_dir, embedding_dir or model_dir / "embeddings")
    return make_plan(job, model_hash(mref, model_dir), hashes, configs, known, loras.hash_of,
                     derive=extra)


def _family(job: JobFile, mref: ModelRef, key: str) -> Detection | None:
    """The detected family of a model; ``None`` when the job file sets the family itself and
    the model's files cannot tell (a pickle, a hub model not downloaded here)."""
    try:
        return detect_family(mref)
    except ModelError as exc:
        if "family" in job.explicit and isinstance(exc, FamilyUnknown):
            if mref.kind == "hub" and hub_offline_by_env():
                # Where render would fail: nothing can fetch it. Online, render downloads it.
                raise JobFileError(
                    job.path, key, f"model {mref.ref!r} is not in the Hugging Face cache here "
                    "and HF_HUB_OFFLINE is set, so it cannot be downloaded; download it where "
                    f"there is network (huggingface-cli download {mref.ref}) and copy the cache "
                    "over, or point model = at a local diffusers folder") from None
            return None
        raise JobFileError(job.path, key, str(exc)) from None


def detect_family(mref: ModelRef) -> Detection:
    """What family ``mref`` is, from its files (never its tensors): a built-in model's is
    known; a single file with ``model_config`` is its config folder's. :class:`ModelError`
    when it is unknown or unsupported, :class:`FamilyUnknown` when the files cannot tell (a
    job file's ``family =`` settles it then)."""
    if mref.kind == "builtin":
        assert mref.path is not None
        family, prediction = BUILTIN_FAMILIES[mref.path.name.removeprefix("builtin-")]
        return Detection(family, prediction, f"built-in {FAMILIES[family].title} model")
    if mref.kind == "folder":
        assert mref.path is not None
        return detect_folder(mref.path)
    if mref.kind == "file":
        assert mref.path is not None
        if mref.config is not None:
            return detect_folder(mref.config)
        if mref.path.suffix.lower() in SAFE_SUFFIXES:
            return detect_file(mref.path)
        raise _undetectable(f"model {mref.ref!r} is a pickle checkpoint, whose architecture "
                            f"cannot be read without running it")
    folder = cached_hub_folder(mref.ref)
    if folder is None:
        raise _undetectable(f"model {mref.ref!r} is not in the Hugging Face cache here, so its "
                            f"family cannot be read from its model_index.json")
    return detect_folder(folder)


def _undetectable(problem: str) -> FamilyUnknown:
    names = ", ".join(FAMILIES)
    return FamilyUnknown(f"{problem}; set family = (one of {names}) in the job file, or "
                         f"model_config = a diffusers folder of the same architecture")



def model_refs(job: JobFile, mref: ModelRef, model_dir: Path) -> list[ModelRef]:
    """Every model the job renders with: ``model``, then each model axis value."""
    refs = [mref]
    for axis in job.axes:
        if axis.param == "model":
            refs += [_axis_model_ref(job, axis, v, model_dir)[1] for v in axis.values]
    return refs
