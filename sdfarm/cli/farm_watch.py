"""What ``sdfarm watch`` and ``sdfarm status`` draw: a live rich progress bar of one sweep,
and tables of sweeps and workers. Everything comes from the database, polled."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.farm_status import SweepProgress, latest_sweeps, sweep_progress
from sdfarm.db.models import utcnow
from sdfarm.db.workers import is_alive, workers
from sdfarm.errors import SweepNotFound

_STATUSES = ("queued", "running", "done", "failed", "canceled")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def _progress(settings: Settings, sweep_id: int) -> SweepProgress:
    with session_factory(settings.database_url)() as session:
        p = sweep_progress(session, sweep_id)
    if p is None:
        raise SweepNotFound(f"no sweep {sweep_id}; `sdfarm status` lists the sweeps")
    return p


def _alive_workers(settings: Settings) -> int:
    with session_factory(settings.database_url)() as session:
        return sum(is_alive(w, settings.heartbeat_seconds) for w in workers(session))


def watch_sweep(settings: Settings, sweep_id: int, interval: float = 1.0,
                console: Console | None = None) -> SweepProgress:
    """Redraw the sweep's progress every ``interval`` seconds until no job is queued or
    running; returns the last reading."""
    console = console or Console(stderr=True)
    p = _progress(settings, sweep_id)
    bar = Progress(TextColumn(f"[bold]sweep {sweep_id}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), console=console)
    task = bar.add_task("", total=p.sweep.total, detail="")
    line = Text()
    with Live(Group(bar, line), console=console, refresh_per_second=4, transient=False):
        while True:
            c = p.sweep.counts
            finished = c["done"] + c["failed"] + c["canceled"]
            detail = (f"{c['failed']} failed, {c['canceled']} canceled, "
                      f"{p.per_minute:.1f} images/min, ETA {_eta(p.eta_seconds)}")
            bar.update(task, completed=finished, total=p.sweep.total, detail=detail)
            busy = ", ".join(p.busy_workers) or "none"
            line.plain = f"busy on it: {busy}"
            if c["queued"] and not p.busy_workers and not _alive_workers(settings):
                line.plain += "  (no live worker: start one with `sdfarm worker`)"
            if not p.sweep.open:
                return p
            time.sleep(interval)
            p = _progress(settings, sweep_id)


def status_data(settings: Settings, limit: int = 10) -> dict[str, list[dict[str, object]]]:
    now = utcnow()
    with session_factory(settings.database_url)() as session:
        sweeps = latest_sweeps(session, limit)
        rows = workers(session)
        worker_list = [{
            "name": w.name, "host": w.host, "pid": w.pid, "device": w.device,
            "state": w.state if is_alive(w, settings.heartbeat_seconds, now) or w.state == "stopped"
            else "lost",
            "last_heartbeat": w.last_heartbeat.isoformat(sep=" ", timespec="seconds"),
            "seconds_since_heartbeat": round((now - w.last_heartbeat).total_seconds(), 1),
            "current_job_id": w.current_job_id, "current_sweep_id": w.current_sweep_id,
            "loaded_model": w.loaded_model, "jobs_done": w.jobs_done,
        } for w in rows]
    sweep_list = [{
        "id": s.id, "name": s.name, "created_at": s.created_at.isoformat(sep=" ", timespec="seconds"),
        "priority": s.priority, "total": s.total, **{k: s.counts[k] for k in _STATUSES},
    } for s in sweeps]
    return {"sweeps": sweep_list, "workers": worker_list}


def print_status(data: dict[str, list[dict[str, object]]], console: Console | None = None) -> None:
    console = console or Console(width=200 if not Console().is_terminal else None)
    sweeps = Table("sweep", "name", "created", "priority", "total", *_STATUSES, title="sweeps")
    for s in data["sweeps"]:
        sweeps.add_row(str(s["id"]), str(s["name"]), str(s["created_at"]), str(s["priority"]),
                       str(s["total"]), *(str(s[k]) for k in _STATUSES))
    console.print(sweeps)
    table = Table("worker", "state", "last heartbeat", "current job", "sweep", "loaded model",
                  "device", "jobs done", title="workers")
    for w in data["workers"]:
        table.add_row(str(w["name"]), str(w["state"]),
                      f"{w['last_heartbeat']} ({w['seconds_since_heartbeat']:.0f} s ago)",
                      str(w["current_job_id"] or "-"), str(w["current_sweep_id"] or "-"),
                      str(w["loaded_model"] or "-"), str(w["device"] or "-"), str(w["jobs_done"]))
    console.print(table)
