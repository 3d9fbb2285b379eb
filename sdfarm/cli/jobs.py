"""``sdfarm show JOB_ID`` and ``sdfarm rerun JOB_ID``."""

from __future__ import annotations

import json

import click

from sdfarm.config import Settings
from sdfarm.params import PARAMS


@click.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print every field as JSON.")
@click.option("--traceback", "with_traceback", is_flag=True,
              help="Also print the traceback recorded with a failed job's error (for a bug report).")
@click.pass_obj
def show(settings: Settings, job_id: int, as_json: bool, with_traceback: bool) -> None:
    """Every recorded field of JOB_ID, and whether its image is still on disk."""
    from sdfarm.usecases.history import job_details

    fields = job_details(settings, job_id)
    trace = fields.pop("traceback")
    if as_json:
        if with_traceback:
            fields["traceback"] = trace
        click.echo(json.dumps(fields, indent=2, ensure_ascii=False))
        return
    width = max(len(k) for k in fields)
    # The parameters first, in the table's order, then how and where the job was rendered.
    order = [*(k for k in PARAMS if k in fields), *(k for k in fields if k not in PARAMS)]
    for key in order:
        value = fields[key]
        if key == "output_path":
            value = f"{value} ({'present' if fields['file_exists'] else 'MISSING'})"
        if key == "file_exists":
            continue
        text = str(value) if value is not None else "-"
        if key == "error" and trace and not with_traceback:
            text += "  (`--traceback` shows where it was raised)"
        click.echo(f"{key:<{width}}  {text}")
    if trace and with_traceback:
        click.echo(trace)


@click.command()
@click.argument("job_id", type=int)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help=f"Change a parameter (repeatable): {', '.join(PARAMS)}. "
                   "E.g. --set width=1024.")
@click.pass_obj
def rerun(settings: Settings, job_id: int, assignments: tuple[str, ...]) -> None:
    """Render JOB_ID again from its database row into a new sweep linked to it. Without
    --set, say whether the pixels came out identical. Settings an imported image records that
    sdfarm has no parameter for (hires fix, LoRA, ...) are named on stderr: they are not
    applied."""
    from sdfarm.scheduler.overrides import parse_assignments
    from sdfarm.usecases.rerun import rerun_job

    def announce(pass_size: int) -> None:
        if pass_size > 1:
            click.echo(f"job {job_id} shared a forward pass of {pass_size} images; rendering "
                       "that pass again so the pixels can match exactly", err=True)

    def warn(names: list[str]) -> None:
        click.echo(f"rerun of job {job_id} cannot apply: {', '.join(names)}", err=True)

    result = rerun_job(settings, job_id, parse_assignments(assignments), on_plan=announce,
                       on_not_applied=warn)
    click.echo(f"job {result.new_job_id}: {result.output_path}")
    if result.changed:
        changed = ", ".join(f"{k}={new} (was {old})" for k, (new, old) in result.changed.items())
        click.echo(f"rendered with {changed}")
    elif result.difference is None:
        click.echo(f"original image {result.original_path} is missing: nothing to compare")
    elif result.difference == 0:
        click.echo("identical: every pixel matches the original")
    else:
        click.echo(f"differs: largest pixel difference {result.difference}/255 (device "
                   f"{result.device} vs original {result.original_device})")


COMMANDS = [show, rerun]
