"""Other tools' sampler and schedule names, as AUTOMATIC1111 names them (which sdfarm takes).

ComfyUI's KSampler writes k-diffusion's function names (``dpmpp_2m``, ``karras``), as do
Fooocus and SwarmUI; NovelAI writes them with a ``k_`` prefix; InvokeAI names its diffusers
schedulers (``dpmpp_2m_k`` is DPM++ 2M with the Karras schedule). A name with no A1111
equivalent is kept as written: indexing records what happened, and a rerun is where an
unknown sampler becomes an error. Pure: standard library only.
"""

from __future__ import annotations

#: k-diffusion's sampler functions (ComfyUI's ``sampler_name``) -> A1111's sampler names.
K_DIFFUSION: dict[str, str] = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "lms": "LMS",
    "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a", "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive", "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun", "dpmpp_3m_sde": "DPM++ 3M SDE", "ddpm": "DDPM",
    "lcm": "LCM", "ddim": "DDIM", "uni_pc": "UniPC", "uni_pc_bh2": "UniPC", "deis": "DEIS",
    "restart": "Restart",
}
#: ComfyUI's ``scheduler`` -> A1111's ``Schedule type``; NovelAI's ``noise_schedule`` too
#: ("native": the model's own, A1111's Automatic).
K_SCHEDULES: dict[str, str] = {
    "normal": "Normal", "karras": "Karras", "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform", "simple": "Simple", "ddim_uniform": "DDIM", "beta": "Beta",
    "kl_optimal": "KL Optimal", "polyexponential": "Polyexponential", "native": "Automatic",
}
#: InvokeAI's scheduler names (without the ``_k`` suffix that adds Karras) -> A1111's.
INVOKEAI: dict[str, str] = {
    "ddim": "DDIM", "ddpm": "DDPM", "deis": "DEIS", "lms": "LMS", "pndm": "PLMS", "heun": "Heun",
    "euler": "Euler", "euler_a": "Euler a", "kdpm_2": "DPM2", "kdpm_2_a": "DPM2 a",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "unipc": "UniPC", "lcm": "LCM",
}


def from_k_diffusion(sampler: str, scheduler: str | None = None) -> tuple[str, str | None]:
    """(A1111 sampler, A1111 schedule or ``None``) for ComfyUI-style names; unknown names as
    written. ``_gpu`` variants draw the same noise on the GPU: the same sampler."""
    name = sampler.strip()
    base = name.removeprefix("k_").removesuffix("_gpu")
    schedule = None
    if scheduler:
        schedule = K_SCHEDULES.get(scheduler.strip(), scheduler.strip())
    return K_DIFFUSION.get(base, name), schedule


def read_k_diffusion(data: dict, values: dict[str, object], sampler_key: str = "sampler",
                     scheduler_key: str = "scheduler") -> None:
    """Into ``values``: the sampler (and schedule) a JSON object names in ComfyUI's words
    (Fooocus, SwarmUI), when it names them as text."""
    sampler, scheduler = data.get(sampler_key), data.get(scheduler_key)
    if not isinstance(sampler, str):
        return
    values["sampler"], schedule = from_k_diffusion(
        sampler, scheduler if isinstance(scheduler, str) else None)
    if schedule is not None:
        values["schedule"] = schedule


def from_invokeai(scheduler: str) -> tuple[str, str | None]:
    name = scheduler.strip()
    base, karras = (name[:-2], True) if name.endswith("_k") else (name, False)
    if base not in INVOKEAI:
        return name, None
    return INVOKEAI[base], "Karras" if karras else None
