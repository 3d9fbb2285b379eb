"""``sdfarm plan`` (dry run, no torch) and ``sdfarm render`` (record and render here)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import click

from sdfarm.cli.signals import stop_on_signals
from sdfarm.config import Settings
from sdfarm.errors import Interrupted
from sdfarm.families import FAMILIES, family_defaults
from sdfarm.scheduler.familydefaults import defaulted_params
from sdfarm.scheduler.forecast import Forecast, format_duration
from sdfarm.scheduler.loras import parse_hashes
from sdfarm.scheduler.plan import Plan
from sdfarm.usecases.render import load_plan, plan_outlook


def plan_summary(plan: Plan, outlook: Forecast | None = None) -> dict[str, object]:
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


def _plan_lines(plan: Plan, outlook: Forecast) -> list[str]:
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


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--force", is_flag=True, help="Count every image as to render, as render --force does.")
@click.pass_obj
def plan(settings: Settings, job_file: Path, as_json: bool, force: bool) -> None:
    """Dry run: validate JOB_FILE and print what rendering it would do. Imports no torch."""
    p = load_plan(settings, job_file)
    outlook = plan_outlook(settings, p, force=force)
    if as_json:
        click.echo(json.dumps(plan_summary(p, outlook), indent=2, ensure_ascii=False))
        return
    click.echo("\n".join(_plan_lines(p, outlook)))


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True,
              help="Render every image, also those already rendered by an earlier sweep.")
@click.pass_obj
def render(settings: Settings, job_file: Path, quiet: bool, force: bool) -> None:
    """Record JOB_FILE's images in the database and render them here, in this process.

    Images already rendered (same key, file still on disk) are reused, not rendered again;
    a sweep with axes gets its grid images and index.html when it finishes.
    """
    from sdfarm.cli.grid import echo_grid_report
    from sdfarm.usecases.render import record_for_local_render, render_recorded, status_counts

    p = load_plan(settings, job_file, build_builtins=True)
    with stop_on_signals():
        sweep = record_for_local_render(settings, p, force=force)
        click.echo(f"sweep {sweep.sweep_id}: {sweep.images} images, {sweep.reused} reused, "
                   f"{sweep.to_render} to render", err=True)
        try:
            if quiet or not sweep.to_render:
                outcome = render_recorded(settings, sweep)
            else:
                with _progress(sweep) as bar:
                    outcome = render_recorded(settings, sweep, bar)
        except Interrupted as exc:
            counts = status_counts(settings, sweep.sweep_id)
            click.echo(f"sweep {sweep.sweep_id}: interrupted by {exc.signal_name}: "
                       f"{counts['done']} of {sweep.images} images done, "
                       f"{counts['canceled']} left (recorded as interrupted); "
                       f"`sdfarm render {job_file}` again renders them and reuses the done "
                       "ones", err=True)
            sys.exit(128 + exc.signal_number)
    result = outcome.result
    click.echo(f"sweep {sweep.sweep_id}: {result.done} rendered, {sweep.reused} reused, "
               f"{result.failed} failed"
               + (f", {result.canceled} canceled" if result.canceled else ""), err=True)
    if outcome.grids is not None:
        echo_grid_report(outcome.grids)
    if Path(sweep.folder).is_dir():  # not made when every image failed
        click.echo(sweep.folder)
    if result.failed:
        raise click.ClickException(
            f"{result.failed} image(s) failed; see `sdfarm show {result.failed_ids[0]}` for the error")


def _progress(sweep):
    """A live bar on a terminal; plain lines in a log (stderr redirected)."""
    from rich.console import Console

    if Console(stderr=True).is_terminal:
        from sdfarm.cli.progress import RenderProgress

        return RenderProgress(sweep.to_render, sweep.steps_to_render / sweep.to_render)
    from sdfarm.cli.progresslog import RenderProgressLog

    return RenderProgressLog(f"sweep {sweep.sweep_id}", sweep.to_render,
                             lambda line: click.echo(line, err=True))


COMMANDS = [render, plan]
