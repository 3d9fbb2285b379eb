"""``sdfarm plan`` (dry run, no torch) and ``sdfarm render`` (record and render here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sdfarm.cli.signals import stop_on_signals
from sdfarm.config import Settings
from sdfarm.errors import Interrupted
from sdfarm.usecases.plan_report import plan_lines, plan_summary
from sdfarm.usecases.render import load_plan, plan_outlook


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
    click.echo("\n".join(plan_lines(p, outlook)))


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
