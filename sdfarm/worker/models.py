"""Loading a Stable Diffusion pipeline for a :class:`~sdfarm.modelref.ModelRef`.

Every kind goes through diffusers' own loaders (``from_pretrained``, ``from_single_file``), the
built-in models included, so the tiny model exercises the same path as a user's checkpoint.
Nothing is downloaded when the model is already on this machine.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdfarm.errors import ModelError, one_line
from sdfarm.families import FAMILIES
from sdfarm.modelref import ModelRef, hub_offline_by_env
from sdfarm.worker.builtin import ensure_builtin, quiet_libraries

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

#: Passed to every loader: text-to-image batches never run the NSFW filter (it would also
#: need the CLIP image processor and another 1.2 GB of weights per model).
_NO_SAFETY_CHECKER: dict[str, Any] = {
    "safety_checker": None,
    "feature_extractor": None,
    "requires_safety_checker": False,
}


def load_pipeline(mref: ModelRef, model_dir: Path, *, device: str, dtype: torch.dtype,
                  family: str = "sd1", prediction: str | None = None,
                  cpu_offload: bool = False) -> DiffusionPipeline:
    """Load ``mref`` as a ready-to-run pipeline of ``family``'s class on ``device`` in
    ``dtype``. ``prediction`` is what the planner detected (``None``: the files' own); a
    single file without ``model_config`` gets sdfarm's configs for it, offline.
    ``cpu_offload`` keeps each component on the CPU until it runs (cards with little memory).

    Raises :class:`ModelError`, with a one-line cause, for anything that stops it loading.
    """
    with quiet_libraries(), warnings.catch_warnings():
        # diffusers 0.42 renamed torch_dtype to dtype; older releases we support know only
        # torch_dtype (and would ignore dtype), so keep the old name and its warning quiet.
        warnings.filterwarnings("ignore", ".*torch_dtype.*deprecated", FutureWarning)
        import diffusers

        cls = getattr(diffusers, FAMILIES[family].pipeline)
        try:
            pipe = _load(cls, mref, model_dir, dtype, family, prediction)
            if cpu_offload and device != "cpu":
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot load model {mref.ref!r} as {FAMILIES[family].title}: "
                             f"{one_line(exc, named=False)}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load(cls: Any, mref: ModelRef, model_dir: Path, dtype: Any, family: str,
          prediction: str | None) -> Any:
    if mref.kind == "builtin":
        assert mref.path is not None
        folder = ensure_builtin(mref.path.name.removeprefix("builtin-"), model_dir)
        return _from_pretrained(cls, folder, dtype)
    if mref.kind == "folder":
        return _from_pretrained(cls, mref.path, dtype)
    if mref.kind == "hub":
        return _load_hub(cls, mref.ref, dtype)
    return _load_single_file(cls, mref, dtype, family, prediction, model_dir)


def _extra(cls: Any) -> dict[str, Any]:
    # Only SD 1.x/2.x pipelines have a safety checker to leave out.
    return _NO_SAFETY_CHECKER if cls.__name__ == "StableDiffusionPipeline" else {}


def _from_pretrained(cls: Any, source: str | Path, dtype: Any, *,
                     local_files_only: bool = True) -> Any:
    return cls.from_pretrained(source, torch_dtype=dtype, local_files_only=local_files_only,
                               **_extra(cls))


def _load_hub(cls: Any, repo_id: str, dtype: Any) -> Any:
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        return _from_pretrained(cls, repo_id, dtype)
    except Exception as exc:
        if isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str):
            raise  # it is cached, so this is a real load failure, not a missing download
        reason = "HF_HUB_OFFLINE is set" if _hub_offline() else ""
        cause: Exception = exc
    if not reason:
        try:
            return _from_pretrained(cls, repo_id, dtype, local_files_only=False)
        except Exception as exc:
            # diffusers wraps a failed download in "not cached locally"; the cause says why.
            reason, cause = f"downloading failed ({one_line(_root_cause(exc))})", exc
    raise ModelError(
        f"model {repo_id!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and cannot "
        f"be downloaded here: {reason}; download it on a machine with network access "
        f"(huggingface-cli download {repo_id}) and copy the cache over, or point model = at a "
        f"local diffusers folder"
    ) from cause


def _load_single_file(cls: Any, mref: ModelRef, dtype: Any, family: str,
                      prediction: str | None, model_dir: Path) -> Any:
    assert mref.path is not None
    config = mref.config
    if config is None:
        from sdfarm.checkpoints import read_header
        from sdfarm.worker.configs import single_file_config

        # A pickle has no header to read: it gets the family's real configs.
        shapes = (read_header(mref.path).shapes if mref.path.suffix.lower() == ".safetensors"
                  else {})
        try:
            config = single_file_config(shapes, family, prediction or "epsilon", model_dir)
        except ModelError as exc:
            raise ModelError(f"model {mref.ref!r}: {exc}") from exc
    try:
        return cls.from_single_file(str(mref.path), config=str(config), torch_dtype=dtype,
                                    local_files_only=True, **_extra(cls))
    except Exception as exc:
        refused = _unpickling_error(exc)
        if refused is not None:
            raise ModelError(
                f"pickle checkpoint {mref.ref!r} was refused: sdfarm loads pickles only with "
                f"torch's restricted unpickler (weights_only), which would not read it "
                f"({refused}); it holds objects other than tensors or is not a checkpoint. "
                f"Convert it to .safetensors on a machine you trust"
            ) from exc
        raise ModelError(
            f"cannot load single-file checkpoint {mref.ref!r} with the {family} configs in "
            f"{str(config)!r}: {one_line(exc, named=False)}; if it is another architecture, "
            f"set family = in the job file, or model_config = \"path/to/a/diffusers/folder\" "
            f"of the same model"
        ) from exc


def _unpickling_error(exc: BaseException) -> str | None:
    """What torch's weights-only unpickler objected to, when that is why loading failed."""
    import pickle

    seen: set[int] = set()
    inner: BaseException | None = exc
    while inner is not None and id(inner) not in seen:
        if isinstance(inner, pickle.UnpicklingError):
            text = str(inner)
            # torch: "Weights only load failed. <advice>... WeightsUnpickler error: <cause>"
            cause = text.rpartition("WeightsUnpickler error:")[2].strip() or text
            return one_line(RuntimeError(cause), named=False, limit=200)
        seen.add(id(inner))
        inner = inner.__cause__ or inner.__context__
    return None


def _hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; a worker's environment may be set
    # later, so read it again here.
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or hub_offline_by_env()


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc
