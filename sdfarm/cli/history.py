"""``sdfarm history`` (find past jobs), ``sdfarm index FOLDER`` (record images made elsewhere)
and ``sdfarm prune --missing`` (forget jobs whose image is gone)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sdfarm.cli.filters import NumberRange, Size, When
from sdfarm.config import Settings
from sdfarm.db.history import HistoryQuery
from sdfarm.db.models import JobStatus
from sdfarm.metadata.a1111 import model_display_name
from sdfarm.params import PARAMS as P
from sdfarm.usecases.history import find, forget, index_images, missing_images

#: Paths listed before the confirmation question of ``prune``.
PRUNE_PREVIEW = 10


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _console() -> Console:
    # Piped output gets a wide fixed width rather than 80 columns of wrapped cells.
    return Console(width=None if sys.stdout.isatty() else 200)


@click.command()
@click.option("--prompt", metavar="QUERY",
              help='Prompt words (all must appear), "a phrase", prefix*, -excluded. '
                   "Ranked by relevance, then newest first.")
@click.option("--negative", metavar="QUERY", help="The same, in the negative prompt.")
@click.option("--seed", type=int, help=f"Only this {P['seed'].description}.")
@click.option("--model", metavar="NAME|HASH",
              help="Model file or folder name (with or without extension), reference, or hash prefix.")
@click.option("--sampler", help=f"{P['sampler'].description} (case-insensitive); a combined "
                               'name ("DPM++ 2M Karras") also sets --schedule.')
@click.option("--schedule", help=f"{P['schedule'].description} (case-insensitive), e.g. Karras.")
@click.option("--cfg", type=NumberRange.of(P["cfg"]), metavar="VALUE|RANGE",
              help=f"{P['cfg'].description}, e.g. 7 or 6-8.")
@click.option("--steps", type=NumberRange.of(P["steps"]), metavar="VALUE|RANGE",
              help=f"{P['steps'].description}, e.g. 30 or 20-40.")
@click.option("--size", type=Size(), help="Width x height, e.g. 512x768.")
@click.option("--family", type=click.Choice(P["family"].choices, case_sensitive=False),
              help=f"Only this {P['family'].description}.")
@click.option("--lora", metavar="NAME", help="Only jobs with this LoRA (<lora:NAME:...> in the "
                                             "prompt), at any weight.")
@click.option("--sweep", "sweep_id", type=int, metavar="ID", help="Only jobs of this sweep.")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice([s.value for s in JobStatus]), help="Only this status (repeatable).")
@click.option("--since", type=When(), help="Made at or after: 7d, 12h, 30m, 2w ago, or a UTC date.")
@click.option("--until", type=When(end_of_day=True),
              help="Made before: a time ago, or a UTC date (that whole day included).")
@click.option("--missing", is_flag=True, help="Only done jobs whose image file is gone.")
@click.option("--limit", type=click.IntRange(0), default=20, show_default=True,
              help="At most this many jobs; 0 for all.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True,
              help="Skip this many first.")
@click.option("--json", "as_json", is_flag=True, help="Print every field of each job as JSON.")
@click.option("--paths", is_flag=True,
              help="Print only image paths, one per line (implies --status done).")
@click.pass_obj
def history(settings: Settings, prompt, negative, seed, model, sampler, schedule, cfg, steps,
            size, family, lora, sweep_id, statuses, since, until, missing, limit, offset, as_json, paths) -> None:
    """Find past jobs: newest first, or by relevance when searching prompt words."""
    if paths and not statuses:
        statuses = (JobStatus.done.value,)
    query = HistoryQuery(prompt=prompt, negative=negative, seed=seed, model=model,
                         sampler=sampler, schedule=schedule, cfg=cfg, steps=steps, size=size,
                         family=family and family.lower(), lora=lora, sweep_id=sweep_id, statuses=tuple(JobStatus(s) for s in statuses), since=since, until=until)
    found = find(settings, query, limit=limit or None, offset=offset, missing=missing)
    rows, hint = found.rows, found.hint
    if paths:
        for r in rows:
            click.echo(r["output_path"])
    elif as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif rows:  # an empty table is no answer: the message below is, on stderr
        _print_table(rows)
    if not rows:
        click.echo("no matching jobs" + (f"; {hint}" if hint else ""), err=True)


def _print_table(rows: list[dict[str, object]]) -> None:
    table = Table("id", "date (UTC)", "status", "seed", "cfg", "steps", "sampler", "schedule",
                  "model", "prompt", "path")
    for r in rows:
        table.add_row(str(r["id"]), str(r["created_at"])[:16], str(r["status"]), str(r["seed"]),
                      P["cfg"].format(r["cfg"]), str(r["steps"]), str(r["sampler"]),
                      str(r["schedule"]),
                      _short(model_display_name(str(r["model"])), 24), _short(str(r["prompt"])),
                      str(r["output_path"]))
    _console().print(table)


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def index(settings: Settings, folder: Path, quiet: bool) -> None:
    """Record the images under FOLDER (PNG, JPEG, WebP from AUTOMATIC1111, Forge, SD.Next,
    ComfyUI, InvokeAI, NovelAI, SwarmUI, Fooocus or sdfarm) as done jobs of an "imported"
    sweep, so `sdfarm history` finds them. Files already recorded with the same path and
    content are skipped; unreadable ones are reported."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sdfarm.db.importer import image_files

    if quiet or not folder.is_dir():
        report = index_images(settings, folder)
    else:
        bar = Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(),
                       console=Console(stderr=True), transient=True)
        with bar:
            task = bar.add_task("indexing", total=len(image_files(folder.resolve())))
            report = index_images(settings, folder, progress=lambda _: bar.advance(task))
    for path, problem in report.problems:
        click.echo(f"skipped {path}: {problem}", err=True)
    where = f" into sweep {report.sweep_id}" if report.sweep_id is not None else ""
    click.echo(f"indexed {report.indexed} images{where}; {report.already_indexed} already "
               f"indexed; {len(report.problems)} skipped")


@click.command()
@click.option("--missing", is_flag=True, help="Remove jobs whose image file is gone.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def prune(settings: Settings, missing: bool, yes: bool) -> None:
    """Remove job rows from the database (the sweeps stay)."""
    if not missing:
        raise click.UsageError("say what to prune: --missing (done jobs whose image is gone)")
    gone = missing_images(settings)
    if not gone:
        click.echo("no jobs with a missing image")
        return
    for job_id, path in gone[:PRUNE_PREVIEW]:
        click.echo(f"  job {job_id}: {path}")
    if len(gone) > PRUNE_PREVIEW:
        click.echo(f"  … and {len(gone) - PRUNE_PREVIEW} more")
    # Asked outside any transaction: on SQLite an open one would hold the write lock and
    # stall every worker while the question waits.
    if not yes and not click.confirm(f"Remove these {len(gone)} job rows?", default=False):
        click.echo("nothing removed")
        return
    removed = forget(settings, gone)
    click.echo(f"removed {removed} job rows whose image is missing")


COMMANDS = [history, index, prune]
