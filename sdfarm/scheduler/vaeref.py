"""VAE references: what a job file's ``vae =`` (or a ``vae`` axis value) names, checked at plan
time from the file's header, without reading its tensors.

A VAE is a ``.safetensors`` file, named by a path as ``model =`` is (relative to the job file);
``""`` is the model's own VAE. The file may be in the original layout A1111's VAE files have
(``decoder.up.0.block.0...``) or in diffusers' (``decoder.up_blocks.0.resnets.0...``); it is
loaded into a VAE built from the model's own VAE config, so its latent channels must be the
family's. A1111 writes ``VAE hash`` (the first 10 hex digits of the file's sha256, as the model
hash) and ``VAE`` (the file's name).

Pure: the standard library only.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from sdfarm.checkpoints import read_header
from sdfarm.errors import ModelError

VAE_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
#: Prefixes a VAE's tensors may have (a VAE cut out of a checkpoint keeps its own).
PREFIXES = ("first_stage_model.", "vae.", "")
#: The decoder's first convolution: (channels, latent channels, 3, 3) in both layouts.
DECODER_IN = "decoder.conv_in.weight"
#: Latent channels of each family's VAE; the others' are SD's 4.
LATENT_CHANNELS = {"flux-dev": 16, "flux-schnell": 16, "sd3": 16}


def resolve_vae(value: str, base_dir: Path) -> Path:
    """The VAE file ``value`` names (relative to ``base_dir``); :class:`ModelError` saying what
    is wrong when it is not a readable VAE file."""
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelError(f"VAE {value!r} is a pickle file ({suffix}), which can run code when "
                         "loaded; convert it to .safetensors")
    if suffix != VAE_SUFFIX:
        raise ModelError(f"VAE {value!r} is not a .safetensors file; a VAE is a .safetensors "
                         "file (A1111's or diffusers' layout), or \"\" for the model's own")
    if not path.is_file():
        raise ModelError(f"VAE {value!r}: no such file {str(path)!r}")
    latent_channels(path, value)  # a corrupt or foreign file fails here, at plan time
    return path


def latent_channels(path: Path, value: str) -> int:
    """The latent channels of the VAE at ``path``, from its header."""
    try:
        shapes = read_header(path).shapes
    except ModelError as exc:
        raise ModelError(f"VAE {value!r}: {exc}") from None
    for prefix in PREFIXES:
        shape = shapes.get(prefix + DECODER_IN)
        if shape is not None and len(shape) == 4:
            return shape[1]
    raise ModelError(f"VAE {value!r} holds no VAE decoder (no {DECODER_IN} tensor): it is not "
                     "a VAE file")


def family_problem(path: Path, value: str, family: str) -> str | None:
    """Why the VAE cannot decode a ``family`` model's latents, or ``None``."""
    wanted = LATENT_CHANNELS.get(family, 4)
    channels = latent_channels(path, value)
    if channels == wanted:
        return None
    return (f"VAE {value!r} decodes {channels}-channel latents; a {family} model makes "
            f"{wanted}-channel ones: use a VAE made for {family}")


def vae_display_name(vae: str) -> str:
    """What A1111 writes as ``VAE:``: the file's name (``os.path.basename``)."""
    return PurePosixPath(vae.replace("\\", "/")).name
