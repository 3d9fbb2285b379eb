"""``sdfarm history``: find past jobs."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.history import find_jobs, job_fields


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


@click.command()
@click.option("--seed", type=int, help="Only jobs with this seed.")
@click.option("--prompt", help="Only jobs whose prompt contains this text.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.pass_obj
def history(settings: Settings, seed: int | None, prompt: str | None, limit: int, offset: int,
            as_json: bool) -> None:
    """The latest jobs, newest first, optionally filtered."""
    with session_factory(settings.database_url)() as session:
        jobs = find_jobs(session, seed=seed, prompt=prompt, limit=limit, offset=offset)
        rows = [job_fields(j) for j in jobs]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("id", "date", "status", "seed", "cfg", "steps", "sampler", "model", "prompt", "path")
    for r in rows:
        table.add_row(str(r["id"]), str(r["created_at"])[:16], r["status"], str(r["seed"]),
                      f"{r['cfg']:g}", str(r["steps"]), r["sampler"], _short(r["model"], 24),
                      _short(r["prompt"]), r["output_path"])
    Console(width=200 if not click.get_text_stream("stdout").isatty() else None).print(table)


COMMANDS = [history]
