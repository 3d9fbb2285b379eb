"""``sdfarm show JOB_ID`` and ``sdfarm rerun JOB_ID``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy import select

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.history import job_fields
from sdfarm.db.jobs import get_job
from sdfarm.db.models import Job, JobStatus
from sdfarm.errors import JobNotFound, SamplerError, SdfarmError
from sdfarm.samplers import SAMPLERS


@click.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print every field as JSON.")
@click.pass_obj
def show(settings: Settings, job_id: int, as_json: bool) -> None:
    """Every recorded field of JOB_ID, and whether its image is still on disk."""
    with session_factory(settings.database_url)() as session:
        job = get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} in {settings.database_url}")
        fields = job_fields(job)
        fields["file_exists"] = Path(job.output_path).is_file()
        fields["sweep_name"] = job.sweep.name
    if as_json:
        click.echo(json.dumps(fields, indent=2, ensure_ascii=False))
        return
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        if key == "output_path":
            value = f"{value} ({'present' if fields['file_exists'] else 'MISSING'})"
        if key == "file_exists":
            continue
        text = str(value) if value is not None else "-"
        click.echo(f"{key:<{width}}  {text}")


@click.command()
@click.argument("job_id", type=int)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Change a parameter (repeatable): model, prompt, negative_prompt, sampler, "
                   "seed, steps, cfg, width, height, clip_skip. E.g. --set width=1024.")
@click.pass_obj
def rerun(settings: Settings, job_id: int, assignments: tuple[str, ...]) -> None:
    """Render JOB_ID again from its database row into a new sweep linked to it. Without
    --set, say whether the pixels came out identical."""
    from sdfarm.scheduler.dispatch import LocalExecutor, queued_batches, record
    from sdfarm.scheduler.overrides import apply_overrides, parse_assignments
    from sdfarm.scheduler.rerun import rerun_plan
    from sdfarm.worker.output import max_pixel_difference

    changes = parse_assignments(assignments)
    factory = session_factory(settings.database_url)
    with factory() as session:
        job = get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} in {settings.database_url}")
        if "sampler" not in changes and job.sampler not in SAMPLERS:
            raise SamplerError(
                f"job {job_id} was made with sampler {job.sampler!r}, which sdfarm cannot render; "
                f"choose one with --set sampler=NAME: {', '.join(SAMPLERS)}")
        # A resumed cell reused an earlier render: its pixels come from that job's pass.
        rendered = _rendered_origin(session, job)
        companions = [rendered]
        if not changes and rendered.pass_id and (rendered.pass_size or 1) > 1:
            companions = list(session.scalars(
                select(Job).where(Job.pass_id == rendered.pass_id).order_by(Job.pass_index)))
        specs = [j.spec() for j in companions]
        model_config = job.model_config
        if changes:
            specs = [apply_overrides(job.spec(), changes)]
            if "model" in changes:
                specs, model_config = _with_new_model(specs[0], settings)
        _check_model(job_id, specs[0].model, model_config, job.sweep.allow_pickle, settings)
        position = [j.id for j in companions].index(rendered.id)
        original = Path(job.output_path)
        threads = rendered.threads or settings.threads
        plan = rerun_plan(job_id, specs, model_config=model_config,
                          allow_pickle=job.sweep.allow_pickle)
        before = {k: getattr(job, k) for k in changes}
    # The thread count changes the low bits of a CPU render: use the original one.
    run_settings = settings.with_(threads=threads)
    sweep_id = record(run_settings, plan, kind="rerun", rerun_of_job_id=job_id)
    if len(specs) > 1:
        click.echo(f"job {job_id} shared a forward pass of {len(specs)} images; rendering that "
                   "pass again so the pixels can match exactly", err=True)
    executor = LocalExecutor(run_settings)
    for batch in queued_batches(run_settings, sweep_id):
        executor.submit(batch, exact_pass=True)
    executor.join()
    with factory() as session:
        new = session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)).all()
        new_job = new[position]
        if new_job.status != JobStatus.done:
            raise SdfarmError(f"rerun of job {job_id} (job {new_job.id}) ended {new_job.status.value}: "
                              f"{(new_job.error or '').splitlines()[0] if new_job.error else ''}")
    click.echo(f"job {new_job.id}: {new_job.output_path}")
    if changes:
        changed = ", ".join(f"{k}={getattr(new_job, k)} (was {before[k]})" for k in changes)
        click.echo(f"rendered with {changed}")
        return
    if not original.is_file():
        click.echo(f"original image {original} is missing: nothing to compare")
        return
    diff = max_pixel_difference(original, Path(new_job.output_path))
    if diff == 0:
        click.echo("identical: every pixel matches the original")
    else:
        click.echo(f"differs: largest pixel difference {diff}/255 (device {new_job.device} vs "
                   f"original {job.device})")


def _rendered_origin(session, job: Job) -> Job:
    """The job whose render produced ``job``'s image: itself, or the one it reused."""
    seen = {job.id}
    while job.reused_from_job_id and job.reused_from_job_id not in seen:
        earlier = session.get(Job, job.reused_from_job_id)
        if earlier is None:
            break
        seen.add(earlier.id)
        job = earlier
    return job


def _with_new_model(spec, settings: Settings):
    """The spec with the new model's absolute reference and hash, and its config folder."""
    from sdfarm.modelref import model_hash, parse_model_ref

    mref = parse_model_ref(spec.model, settings.model_dir)
    model = str(mref.path) if mref.kind in ("file", "folder") else spec.model
    if mref.kind == "builtin":
        from sdfarm.worker.builtin import ensure_builtin

        ensure_builtin(spec.model.removeprefix("builtin:"), settings.model_dir)
    new = spec.replace(model=model, model_hash=model_hash(mref, settings.model_dir))
    return [new], (str(mref.config) if mref.config else None)


def _check_model(job_id: int, model: str, model_config: str | None, allow_pickle: bool,
                 settings: Settings) -> None:
    """Fail before recording anything when the model cannot be found here (an imported
    image names its model by file name only)."""
    from sdfarm.errors import ModelError
    from sdfarm.modelref import parse_model_ref

    try:
        parse_model_ref(model, settings.model_dir, model_config=model_config,
                        allow_pickle=allow_pickle)
    except ModelError as exc:
        raise ModelError(f"job {job_id}: {exc}; point it at the weights with --set model=PATH") from None


COMMANDS = [show, rerun]
