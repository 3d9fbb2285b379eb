"""``sdfarm plan`` (dry run, no torch) and ``sdfarm render`` (record and render here)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sdfarm.config import Settings
from sdfarm.scheduler.forecast import Forecast, forecast, format_duration
from sdfarm.scheduler.jobfile import load_job_file
from sdfarm.scheduler.plan import Plan
from sdfarm.scheduler.prepare import model_refs, plan_job, resolve_model


def plan_summary(plan: Plan, outlook: Forecast | None = None) -> dict[str, object]:
    summary: dict[str, object] = {
        "name": plan.job.name,
        "model": plan.job.model,
        "images": plan.images,
        "batches": len(plan.batches),
        "total_steps": plan.total_steps,
        "sweep_seed": plan.job.sweep_seed,
        "seeds": sorted({s.seed for s in plan.specs})[:20],
        "prompts": len(plan.prompts),
        "axes": [{"slot": a.slot, "param": a.param, "values": len(a.values),
                  "labels": list(a.labels)} for a in plan.axes],
    }
    if outlook is not None:
        summary.update(reused=outlook.reused, to_render=outlook.to_render,
                       batches=outlook.batches, steps_to_render=outlook.steps_to_render,
                       estimate_seconds=outlook.estimate_seconds,
                       unmeasured_images=outlook.unmeasured_images)
    return summary


def _plan_lines(plan: Plan, outlook: Forecast) -> list[str]:
    job = plan.job
    shape = " x ".join([f"{len(plan.prompts)} prompt{'s' if len(plan.prompts) != 1 else ''}"]
                       + [f"{len(a.values)} {a.param}" for a in plan.axes]
                       + ([f"{len(plan.seeds)} seed{'s' if len(plan.seeds) != 1 else ''}"]
                          if plan.seeds else []))
    lines = [
        f"{job.name}: model {job.model}, sweep seed {job.sweep_seed}",
        f"  images:          {plan.images} ({shape})",
        f"  reused:          {outlook.reused} (already rendered, file on disk)",
        f"  to render:       {outlook.to_render} in {outlook.batches} batches",
        f"  denoising steps: {outlook.steps_to_render} to render (of {plan.total_steps})",
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
    job, mref = resolve_model(load_job_file(job_file), settings.model_dir)
    p = plan_job(job, mref, settings.model_dir)
    outlook = forecast(p, settings.database_url, force=force)
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
    from sdfarm.cli.progress import RenderProgress
    from sdfarm.scheduler.dispatch import record, render_sweep_locally
    from sdfarm.worker.builtin import ensure_builtin

    job, mref = resolve_model(load_job_file(job_file), settings.model_dir)
    for ref in model_refs(job, mref, settings.model_dir):
        if ref.kind == "builtin":
            # Built before planning, so that its hash enters every job's key.
            ensure_builtin(ref.ref.removeprefix("builtin:"), settings.model_dir)
    p = plan_job(job, mref, settings.model_dir)
    sweep_id = record(settings, p, force=force)
    todo, todo_steps = _queued(settings, sweep_id)
    reused = p.images - todo
    click.echo(f"sweep {sweep_id}: {p.images} images, {reused} reused, {todo} to render",
               err=True)
    if quiet or not todo:
        result = render_sweep_locally(settings, sweep_id)
    else:
        with RenderProgress(todo, todo_steps / todo) as bar:
            result = render_sweep_locally(settings, sweep_id, bar)
    folder = _sweep_folder(settings, sweep_id)
    click.echo(f"sweep {sweep_id}: {result.done} rendered, {reused} reused, {result.failed} failed"
               + (f", {result.canceled} canceled" if result.canceled else ""), err=True)
    if p.axes:
        from sdfarm.cli.grid import echo_grid_report
        from sdfarm.worker.gridwriter import write_grids

        echo_grid_report(write_grids(settings, sweep_id))
    click.echo(folder)
    if result.failed:
        raise click.ClickException(
            f"{result.failed} image(s) failed; see `sdfarm show {result.failed_ids[0]}` for the error")


def _queued(settings: Settings, sweep_id: int) -> tuple[int, int]:
    """Images left to render in the sweep, and their denoising steps."""
    from sqlalchemy import func, select

    from sdfarm.db.engine import session_factory
    from sdfarm.db.models import Job, JobStatus

    with session_factory(settings.database_url)() as session:
        count, steps = session.execute(
            select(func.count(), func.coalesce(func.sum(Job.steps), 0))
            .where(Job.sweep_id == sweep_id, Job.status == JobStatus.queued)).one()
    return count, steps


def _sweep_folder(settings: Settings, sweep_id: int) -> str:
    from sdfarm.db.engine import session_factory
    from sdfarm.db.models import Sweep

    with session_factory(settings.database_url)() as session:
        return session.get(Sweep, sweep_id).output_dir


COMMANDS = [render, plan]
