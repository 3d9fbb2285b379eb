"""``sdfarm plan`` (dry run, no torch) and ``sdfarm render`` (record and render here)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sdfarm.config import Settings
from sdfarm.scheduler.jobfile import load_job_file
from sdfarm.scheduler.plan import Plan
from sdfarm.scheduler.prepare import plan_job, resolve_model


def plan_summary(plan: Plan) -> dict[str, object]:
    return {
        "name": plan.job.name,
        "model": plan.job.model,
        "images": plan.images,
        "batches": len(plan.batches),
        "total_steps": plan.total_steps,
        "sweep_seed": plan.job.sweep_seed,
        "seeds": sorted({s.seed for s in plan.specs})[:20],
    }


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_obj
def plan(settings: Settings, job_file: Path, as_json: bool) -> None:
    """Dry run: validate JOB_FILE and print what rendering it would do. Imports no torch."""
    job, mref = resolve_model(load_job_file(job_file), settings.model_dir)
    p = plan_job(job, mref, settings.model_dir)
    summary = plan_summary(p)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['name']}: {p.images} images in {len(p.batches)} batches, "
               f"{p.total_steps} denoising steps (model {job.model}, sweep seed {job.sweep_seed})")


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def render(settings: Settings, job_file: Path, quiet: bool) -> None:
    """Record JOB_FILE's images in the database and render them here, in this process."""
    from sdfarm.cli.progress import RenderProgress
    from sdfarm.scheduler.dispatch import record, render_sweep_locally
    from sdfarm.worker.builtin import ensure_builtin

    job, mref = resolve_model(load_job_file(job_file), settings.model_dir)
    if mref.kind == "builtin":
        # Built before planning, so that its hash enters every job's key.
        ensure_builtin(job.model.removeprefix("builtin:"), settings.model_dir)
    p = plan_job(job, mref, settings.model_dir)
    sweep_id = record(settings, p)
    click.echo(f"sweep {sweep_id}: {p.images} images in {len(p.batches)} batches", err=True)
    if quiet:
        result = render_sweep_locally(settings, sweep_id)
    else:
        with RenderProgress(p.images, p.total_steps / max(1, p.images)) as bar:
            result = render_sweep_locally(settings, sweep_id, bar)
    folder = _sweep_folder(settings, sweep_id)
    click.echo(f"sweep {sweep_id}: {result.done} done, {result.failed} failed"
               + (f", {result.canceled} canceled" if result.canceled else ""), err=True)
    click.echo(folder)
    if result.failed:
        raise click.ClickException(
            f"{result.failed} image(s) failed; see `sdfarm show {result.failed_ids[0]}` for the error")


def _sweep_folder(settings: Settings, sweep_id: int) -> str:
    from sdfarm.db.engine import session_factory
    from sdfarm.db.models import Sweep

    with session_factory(settings.database_url)() as session:
        return session.get(Sweep, sweep_id).output_dir


COMMANDS = [render, plan]
