"""What ``sdfarm watch`` and ``sdfarm status`` draw: a live rich progress bar of one sweep,
and tables of sweeps and workers, from ``sdfarm.usecases.status`` (the database, polled)."""

from __future__ import annotations

import time
from collections.abc import Callable

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from sdfarm.cli.progresslog import ProgressLog, format_eta
from sdfarm.config import Settings
from sdfarm.db.farm_status import SweepProgress
from sdfarm.usecases.status import STATUSES, alive_workers, plan_warnings_of, sweep_progress_of


def watch_sweep(settings: Settings, sweep_id: int, interval: float = 1.0,
                console: Console | None = None) -> SweepProgress:
    """Redraw the sweep's progress every ``interval`` seconds until no job is queued or
    running; returns the last reading. With stdout not a terminal (a log file), plain lines
    on stdout instead (see :mod:`sdfarm.cli.progresslog`). Starts with the warnings planning
    gave (a sweep submitted by a script may not have shown them to anyone)."""
    for warning in plan_warnings_of(settings, sweep_id):
        click.echo(f"Warning: {warning}", err=True)
    if console is None and not Console().is_terminal:
        p = _log_sweep(settings, sweep_id, interval, click.echo)
        wait_for_grid(settings, sweep_id, Console(), interval)
        return p
    console = console or Console(stderr=True)
    p = sweep_progress_of(settings, sweep_id)
    bar = Progress(TextColumn(f"[bold]sweep {sweep_id}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), console=console)
    task = bar.add_task("", total=p.sweep.total, detail="")
    line = Text()
    with Live(Group(bar, line), console=console, refresh_per_second=4, transient=False):
        while True:
            c = p.sweep.counts
            finished = c["done"] + c["failed"] + c["canceled"]
            detail = (f"{c['failed']} failed, {c['canceled']} canceled, "
                      f"{p.per_minute:.1f} images/min, ETA {format_eta(p.eta_seconds)}")
            bar.update(task, completed=finished, total=p.sweep.total, detail=detail)
            busy = ", ".join(p.busy_workers) or "none"
            line.plain = f"busy on it: {busy}"
            if c["queued"] and not p.busy_workers and not alive_workers(settings):
                line.plain += "  (no live worker: start one with `sdfarm worker`)"
            if not p.sweep.open:
                break
            time.sleep(interval)
            p = sweep_progress_of(settings, sweep_id)
    wait_for_grid(settings, sweep_id, console, interval)
    return p


#: Seconds ``watch`` waits, after the last job, for a worker to write the sweep's grid.
GRID_WAIT_SECONDS = 120.0


def wait_for_grid(settings: Settings, sweep_id: int, console: Console, interval: float,
                  timeout: float = GRID_WAIT_SECONDS) -> bool:
    """For a sweep with axes: wait while a live worker may still be writing its grid (the
    worker that ended the sweep writes it), then say where it is, or how to write it."""
    from sdfarm.grids.finish import grid_state_of

    end = time.monotonic() + timeout
    state = grid_state_of(settings, sweep_id)
    with console.status("writing the grid…"):
        while (state is not None and state.has_axes and not state.current
               and time.monotonic() < end and alive_workers(settings)):
            time.sleep(interval)
            state = grid_state_of(settings, sweep_id)
    if state is None or not state.has_axes:
        return False
    if state.current:
        console.print(f"grid: {state.folder}/index.html", highlight=False, soft_wrap=True)
        return True
    console.print(f"grid: not written yet; `sdfarm grid {sweep_id}` writes it",
                  highlight=False, soft_wrap=True)
    return False


def _log_sweep(settings: Settings, sweep_id: int, interval: float,
               write: Callable[[str], None], **kw) -> SweepProgress:
    p = sweep_progress_of(settings, sweep_id)
    log = ProgressLog(f"sweep {sweep_id}", p.sweep.total, write, **kw)
    while True:
        c = p.sweep.counts
        log.update(c["done"], c["failed"], c["canceled"], p.per_minute, p.eta_seconds,
                   final=not p.sweep.open)
        if not p.sweep.open:
            return p
        time.sleep(interval)
        p = sweep_progress_of(settings, sweep_id)


def print_status(data: dict[str, list[dict[str, object]]], console: Console | None = None) -> None:
    console = console or Console(width=200 if not Console().is_terminal else None)
    sweeps = Table("sweep", "name", "created", "priority", "total", *STATUSES, title="sweeps")
    for s in data["sweeps"]:
        sweeps.add_row(str(s["id"]), str(s["name"]), str(s["created_at"]), str(s["priority"]),
                       str(s["total"]), *(str(s[k]) for k in STATUSES))
    console.print(sweeps)
    table = Table("worker", "state", "last heartbeat", "current job", "sweep", "loaded model",
                  "device", "jobs done", title="workers")
    for w in data["workers"]:
        table.add_row(str(w["name"]), str(w["state"]),
                      f"{w['last_heartbeat']} ({w['seconds_since_heartbeat']:.0f} s ago)",
                      str(w["current_job_id"] or "-"), str(w["current_sweep_id"] or "-"),
                      str(w["loaded_model"] or "-"), str(w["device"] or "-"), str(w["jobs_done"]))
    console.print(table)
