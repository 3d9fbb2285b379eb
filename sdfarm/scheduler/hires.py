"""The hires fix and img2img in a job file: the ``hires`` table, and which settings need
which. Pure.

``hires = { scale = 2, steps = 10, denoise = 0.5, upscaler = "latent" }`` turns the hires fix
on with A1111's meanings: upscale the first pass by ``scale``, then denoise it again at
``denoise`` for ``steps`` steps (0: as many as ``steps``). It sets the parameters
``hires_scale``, ``hires_steps``, ``hires_denoise`` and ``hires_upscaler``, which axes vary.
``init_image`` (with ``denoise``) makes every image an img2img render of that image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sdfarm.params import PARAMS, BadValue, describe
from sdfarm.scheduler.axes import Axis
from sdfarm.suggest import did_you_mean

#: Builds the exception for a problem at a job file key.
Fail = Callable[[str, str], Exception]

#: What the ``hires`` table takes, and the parameter each key sets.
TABLE_KEYS: dict[str, str] = {"scale": "hires_scale", "steps": "hires_steps",
                              "denoise": "hires_denoise", "upscaler": "hires_upscaler"}
#: What the job file's key list says of it.
DESCRIPTION = 'hires fix: { scale = 2, steps = 10, denoise = 0.5, upscaler = "latent" }'
#: A1111's default upscale factor, when the table leaves ``scale`` out.
DEFAULT_SCALE = 2.0
#: The settings that act only with the hires fix on.
_HIRES_ONLY = ("hires_steps", "hires_denoise", "hires_upscaler")


def hires_values(data: Mapping[str, Any], axes: Sequence[Axis], values: Mapping[str, Any],
                 fail: Fail) -> dict[str, object]:
    """The hires parameters the ``hires`` table sets (empty without one), after checking that
    no hires or img2img setting is given where it would change nothing.

    ``values`` are the per-image parameters read from the file's top-level keys.
    """
    out = _table(data, fail) if "hires" in data else {}
    axis_of = {a.param: a for a in axes}
    scale = out.get("hires_scale", values["hires_scale"])
    scale_axis = axis_of.get("hires_scale")
    hires_on = scale > 0 or (scale_axis is not None and any(v > 0 for v in scale_axis.values))
    if not hires_on:
        for name in _HIRES_ONLY:
            if name in data or name in axis_of:
                key = axis_of[name].key if name in axis_of else name
                raise fail(key, "applies to the hires fix, which is off; turn it on with "
                                "hires = { scale = 2 } (or hires_scale = 2)")
    init = values["init_image"]
    if not init and ("denoise" in data or "denoise" in axis_of):
        key = axis_of["denoise"].key if "denoise" in axis_of else "denoise"
        raise fail(key, 'applies to img2img only; set init_image = "path.png" (the hires '
                        "fix takes its own denoise: hires = { denoise = 0.5 })")
    if init:
        for name in ("subseed_strength", "ensd"):
            if values[name] != PARAMS[name].default or name in axis_of:
                key = axis_of[name].key if name in axis_of else name
                raise fail(key, "does not apply to img2img (init_image): diffusers' img2img "
                                "pipeline draws its noise from the seed alone; remove it")
    if init and hires_on:
        raise fail("init_image", "img2img has no hires fix (as in A1111); remove the hires "
                                 "settings, or render the hires image first and use it as "
                                 "init_image")
    return out


def _table(data: Mapping[str, Any], fail: Fail) -> dict[str, object]:
    table = data["hires"]
    if not isinstance(table, dict):
        raise fail("hires", f"must be a table, like {DESCRIPTION.partition(': ')[2]}; "
                            f"got {describe(table)}")
    for key in table:
        if key not in TABLE_KEYS:
            raise fail(f"hires.{key}", f"unknown key{did_you_mean(key, TABLE_KEYS)}; "
                                       f"allowed: {', '.join(TABLE_KEYS)}")
    both = [name for name in TABLE_KEYS.values() if name in data]
    if both:
        raise fail(both[0], "is set by the hires table already; set it in one place")
    out: dict[str, object] = {}
    for key, name in TABLE_KEYS.items():
        if key not in table:
            continue
        value = table[key]
        param = PARAMS[name]
        if name == "hires_upscaler" and isinstance(value, str):
            # "latent" as the issue and A1111's API write it; stored as A1111's infotext does.
            value = {c.casefold(): c for c in param.choices}.get(value.casefold(), value)
        try:
            out[name] = param.check(value)
        except BadValue as exc:
            problem = exc.detail if exc.reason == "unknown" else \
                f"must be {param.expected}, got {describe(value)}"
            raise fail(f"hires.{key}", problem) from None
    out.setdefault("hires_scale", DEFAULT_SCALE)
    if out["hires_scale"] == 0:
        raise fail("hires.scale", "must be above 0 (leave the hires table out for no hires "
                                  "fix)")
    return out
