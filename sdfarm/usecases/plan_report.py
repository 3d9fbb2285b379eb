"""What ``sdfarm plan`` says about a plan, as data and as lines: the CLI prints it, the
page's submit form shows it, so both say the same thing."""

from __future__ import annotations

from collections import Counter

from sdfarm.families import FAMILIES, family_defaults
from sdfarm.scheduler.familydefaults import defaulted_params
from sdfarm.scheduler.forecast import Forecast, format_duration
from sdfarm.scheduler.loras import parse_hashes
from sdfarm.scheduler.plan import Plan


def plan_summary(plan: Plan, outlook: Forecast | None = None) -> dict[str, object]:
    """The plan as ``sdfarm plan --json`` prints it."""
    summary: dict[str, object] = {
        "name": plan.job.name,
        "model": plan.job.base.model,
        "images": plan.images,
        "batches": len(plan.batches),
        "total_steps": plan.total_steps,
        "sweep_seed": plan.job.sweep_seed,
        "seeds": sorted(set(plan.seeds) or {s.seed for s in plan.rows})[:20],
        "prompts": len(plan.prompts),
        "axes": [{"slot": a.slot, "param": a.param, "values": len(a.values),
                  "labels": list(a.labels)} for a in plan.axes],
        "models": [{"model": model, "family": family, "prediction": prediction,
                    "defaults": defaults}
                   for model, (family, prediction, defaults) in model_families(plan).items()],
    }
    if outlook is not None:
        summary.update(reused=outlook.reused, to_render=outlook.to_render,
                       batches=outlook.batches, steps_to_render=outlook.steps_to_render,
                       estimate_seconds=outlook.estimate_seconds,
                       unmeasured_images=outlook.unmeasured_images)
    return summary


def model_families(plan: Plan) -> dict[str, tuple[str, str, dict[str, object]]]:
    """Each model of the plan: its family, prediction type and the family defaults its images
    take (those the job file neither sets nor varies)."""
    defaulted = defaulted_params(plan.job)
    found = dict.fromkeys((s.model, s.family, s.prediction) for s in plan.rows)
    return {model: (family, prediction,
                    {k: v for k, v in family_defaults(family, prediction).items()
                     if k in defaulted and v is not None})
            for model, family, prediction in found}


def _model_line(model: str, family: str, prediction: str, defaults: dict[str, object]) -> str:
    what = f"{FAMILIES[family].title} ({family}" + (
        f", {prediction}-prediction)" if prediction == "v" else ")")
    shown = []
    if "width" in defaults:
        shown.append(f"{defaults['width']}x{defaults['height']}")
    if "steps" in defaults:
        shown.append(f"{defaults['steps']} steps")
    if "cfg" in defaults:
        shown.append(f"cfg {defaults['cfg']:g}")  # type: ignore[str-format]
    if "sampler" in defaults:
        shown.append(str(defaults["sampler"]))
    if "guidance" in defaults:
        shown.append(f"guidance {defaults['guidance']:g}")  # type: ignore[str-format]
    return f"    {model}: {what}" + (f"; defaults {', '.join(shown)}" if shown else "")


def _lora_lines(plan: Plan) -> list[str]:
    """Each LoRA the plan uses, with its file's hash and how many images use it."""
    images: Counter[tuple[str, str]] = Counter()
    for row in plan.rows:
        for name, digest in parse_hashes(row.lora_hashes).items():
            images[(name, digest)] += plan.per_row
    if not images:
        return []
    return ["  loras:", *(f"    {name} ({digest}): {n} image{'s' if n != 1 else ''}"
                          for (name, digest), n in sorted(images.items()))]


def plan_lines(plan: Plan, outlook: Forecast) -> list[str]:
    """What ``sdfarm plan`` prints, line by line (the page shows the same lines)."""
    job = plan.job
    shape = " x ".join([f"{len(plan.prompts)} prompt{'s' if len(plan.prompts) != 1 else ''}"]
                       + [f"{len(a.values)} {a.param}" for a in plan.axes]
                       + ([f"{len(plan.seeds)} seed{'s' if len(plan.seeds) != 1 else ''}"]
                          if plan.seeds else []))
    lines = [
        f"{job.name}: model {job.base.model}, sweep seed {job.sweep_seed}",
        f"  images:          {plan.images} ({shape})",
        f"  reused:          {outlook.reused} (already rendered, file on disk)",
        f"  to render:       {outlook.to_render} in {outlook.batches} batches",
        f"  denoising steps: {outlook.steps_to_render} to render (of {plan.total_steps})",
        "  models:",
        *(_model_line(model, *info) for model, info in model_families(plan).items()),
        *_lora_lines(plan),  # issue 11: LoRA
    ]
    if outlook.estimate_seconds is None:
        lines.append("  estimate:        unknown (no image of this model and size measured yet)")
    else:
        partial = (f"; {outlook.unmeasured_images} images of an unmeasured model or size not "
                   "included" if outlook.unmeasured_images else "")
        lines.append(f"  estimate:        {format_duration(outlook.estimate_seconds)} "
                     f"(from measured seconds per step{partial})")
    return lines
