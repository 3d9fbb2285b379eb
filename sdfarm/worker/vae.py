"""A pass's VAE (issue 11): the model's own, or one loaded from a file in its place.

Swapping ``pipe.vae`` changes the decoder only: the rest of the pipeline stays loaded, so a VAE
axis costs one VAE load per file, never a model load. A file's VAE is built from the model's own
VAE config (so an SDXL VAE keeps SDXL's scaling factor and upcasting, where a config-less
``from_single_file`` would take SD 1.5's) and takes the file's tensors in either layout:
A1111's original one (``decoder.up.0.block.0...``, converted by diffusers' own single-file
converter) or diffusers'. The last file loaded is kept while passes use it; the next file
replaces it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sdfarm.errors import ModelError, one_line
from sdfarm.modelref import cached_sha256
from sdfarm.scheduler.vaeref import PREFIXES, VAE_SUFFIX
from sdfarm.worker.builtin import quiet_libraries

#: Tensors of training state that A1111's VAE loader drops too.
_IGNORED = ("model_ema.decay", "model_ema.num_updates")


class VaeSwitch:
    """Puts each pass's VAE in its pipeline, loading a file's once while it is used."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        #: The model's own VAE, by pipeline.
        self._own: dict[int, Any] = {}
        #: The file VAE in use, by pipeline: (path, hash, the module).
        self._file: dict[int, tuple[str, str, Any]] = {}
        #: How many times each VAE file was loaded.
        self.loads: Counter[str] = Counter()

    def use(self, pipe: Any, vae: str, vae_hash: str) -> None:
        """Give ``pipe`` the VAE of ``vae`` (``""``: the model's own)."""
        own = self._own.setdefault(id(pipe), pipe.vae)
        if not vae:
            if pipe.vae is not own:
                pipe.vae = own
            return
        current = self._file.get(id(pipe))
        if current is None or current[:2] != (vae, vae_hash):
            self._file.pop(id(pipe), None)  # freed before the next one is read
            with quiet_libraries():
                module = load_vae(Path(vae), vae_hash, own, pipe, self.model_dir)
            self.loads[vae] += 1
            current = self._file[id(pipe)] = (vae, vae_hash, module)
        if pipe.vae is not current[2]:
            pipe.vae = current[2]

    def forget(self, pipe: Any) -> None:
        """Drop what is kept for a pipeline that leaves the cache."""
        self._own.pop(id(pipe), None)
        self._file.pop(id(pipe), None)


def load_vae(path: Path, vae_hash: str, own: Any, pipe: Any, model_dir: Path) -> Any:
    """The VAE in ``path``, built like ``own`` (the model's VAE: config, dtype), on the device
    the pipeline runs on. :class:`ModelError` when the file is gone, changed since it was
    planned, or does not fit the model's VAE."""
    if not path.is_absolute() or path.suffix.lower() != VAE_SUFFIX or not path.is_file():
        raise ModelError(f"VAE {str(path)!r} is not a .safetensors file on this machine; "
                         "point vae = at the file")
    try:
        found = cached_sha256(path, model_dir)[:len(vae_hash) or 10]
    except OSError as exc:
        raise ModelError(f"cannot read VAE {str(path)!r}: {exc.strerror or exc}") from exc
    if vae_hash and found != vae_hash:
        raise ModelError(f"VAE {str(path)!r} has hash {found} here, but the job was planned "
                         f"with hash {vae_hash}: the file changed; plan the job again")
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ModelError(f"cannot read VAE {str(path)!r}: {one_line(exc, named=False)}") from exc
    state = _diffusers_layout(state, dict(own.config))
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(own.config)
    expected = set(vae.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        shown = "; ".join(part for part in (
            f"{len(missing)} tensors missing ({', '.join(missing[:3])})" if missing else "",
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})" if unexpected else "",
        ) if part)
        raise ModelError(f"VAE {str(path)!r} does not fit the model's VAE: {shown}")
    try:
        vae.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # a shape that differs: another architecture
        raise ModelError(f"VAE {str(path)!r} does not fit the model's VAE: "
                         f"{one_line(exc, named=False, limit=300)}") from exc
    return vae.to(device=pipe._execution_device, dtype=own.dtype).eval().requires_grad_(False)


def _diffusers_layout(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The tensors named as diffusers' ``AutoencoderKL`` names them."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = {k: v for k, v in state.items() if not k.startswith("loss") and k not in _IGNORED}
    for prefix in PREFIXES:
        if any(k.startswith(prefix + "decoder.up.") for k in state):  # the original layout
            return convert_ldm_vae_checkpoint(state, config)
    for prefix in PREFIXES:
        if prefix and all(k.startswith(prefix) for k in state):
            return {k.removeprefix(prefix): v for k, v in state.items()}
    return state
