"""The farm commands: ``submit``, ``worker``, ``watch``, ``status``, ``recover``, ``cancel``,
``retry``.

Only ``worker`` imports torch, and only after it has pinned its GPU; the others send tasks by
name and read the database.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from sdfarm.config import Settings
from sdfarm.errors import SdfarmError


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True,
              help="0-9; a higher priority runs first.")
@click.option("--force", is_flag=True, help="Render every image, also those already rendered "
              "(same key, file on disk), which are otherwise reused.")
@click.pass_obj
def submit(settings: Settings, job_file: Path, priority: int, force: bool) -> None:
    """Record JOB_FILE's images and queue them for the farm's workers; prints the sweep id."""
    from sdfarm.usecases.farm import submit as submit_plan
    from sdfarm.usecases.render import load_plan

    plan = load_plan(settings, job_file)
    result = submit_plan(settings, plan, priority=priority, force=force)
    reused = result.images - result.queued
    reused -= result.waiting
    click.echo(f"sweep {result.sweep_id}: {result.queued} images in {result.batches} batches "
               f"queued (priority {priority})" + (f", {reused} reused" if reused else "")
               + (f", {result.waiting} waiting for the identical jobs another sweep is "
                  "rendering" if result.waiting else "")
               + f"; follow it with `sdfarm watch {result.sweep_id}`", err=True)
    click.echo(result.sweep_id)


@click.command()
@click.option("--gpu", type=click.IntRange(0), help="GPU index N: sets CUDA_VISIBLE_DEVICES=N "
              "for this process and names it gpuN@<host>.")
@click.option("--name", help="Node name, recorded on every job it renders "
              "[default: SDFARM_WORKER_NAME, else gpu<N>@<host>, else cpu@<host>].")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.pass_obj
def worker(settings: Settings, gpu: int | None, name: str | None, loglevel: str) -> None:
    """Render the farm's batches on one device until stopped (Ctrl+C or SIGTERM finish the
    running batch first). Start one per GPU."""
    if gpu is not None:
        if "torch" in sys.modules:  # CUDA reads the variable once, when torch initialises it
            raise SdfarmError("torch was imported before --gpu could set CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        if settings.device == "auto":
            import torch  # only now: it reads CUDA_VISIBLE_DEVICES once

            if not torch.cuda.is_available():
                raise SdfarmError(
                    f"--gpu {gpu}: torch sees no CUDA GPU {gpu} here (is the CUDA build of torch "
                    f"installed, and does nvidia-smi list GPU {gpu}? see README, 'GPU install'); "
                    f"leave --gpu out to render on the CPU")
            settings = settings.with_(device="cuda")
    from sdfarm.worker.farm_worker import node_name, run_worker

    name = name or settings.worker_name or node_name(gpu)
    sys.exit(run_worker(settings, name, loglevel=loglevel.upper()))


@click.command()
@click.argument("sweep_id", type=int)
@click.option("--interval", type=click.FloatRange(0.1), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.pass_obj
def watch(settings: Settings, sweep_id: int, interval: float) -> None:
    """Live progress of SWEEP_ID until it ends: done/total, failed, images/min, ETA and the
    workers busy on it. Exit status 1 if any image failed."""
    from sdfarm.cli.farm_watch import watch_sweep

    final = watch_sweep(settings, sweep_id, interval)
    c = final.sweep.counts
    click.echo(f"sweep {sweep_id}: {c['done']}/{final.sweep.total} done, {c['failed']} failed, "
               f"{c['canceled']} canceled")
    if c["failed"]:
        raise click.ClickException(f"{c['failed']} image(s) failed; `sdfarm retry {sweep_id}` "
                                   "queues them again")


@click.command()
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True,
              help="How many of the latest sweeps.")
@click.option("--json", "as_json", is_flag=True, help="Print sweeps and workers as JSON.")
@click.pass_obj
def status(settings: Settings, limit: int, as_json: bool) -> None:
    """The latest sweeps with their job counts, and every worker with its last heartbeat,
    current job and loaded model."""
    from sdfarm.cli.farm_watch import print_status
    from sdfarm.usecases.status import status_data

    data = status_data(settings, limit)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print_status(data)


@click.command()
@click.pass_obj
def recover(settings: Settings) -> None:
    """Requeue jobs whose worker died (expired lease, or the worker found gone) and send
    every queued job the broker does not hold, e.g. after a Redis restart or FLUSHALL. Safe to
    run at any time."""
    from sdfarm.broker.queue import recover as recover_farm

    report = recover_farm(settings, thorough=True)
    click.echo(f"requeued {len(report.requeued)} job(s) with an expired lease and "
               f"{len(report.released)} of workers found gone, failed "
               f"{len(report.failed)} out of attempts; the broker held {report.held} queued "
               f"job(s); sent {report.enqueued_jobs} in {report.enqueued_batches} task(s)")
    local = report.local
    if local.interrupted:
        click.echo(f"local renders gone: {_sweep_jobs(local.interrupted)} marked interrupted "
                   "(`sdfarm render FILE` again renders what is left)", err=True)
    if local.running_elsewhere:
        click.echo(f"local renders still running or on another host: "
                   f"{_sweep_jobs(local.running_elsewhere)} left to them, not sent to the farm",
                   err=True)


def _sweep_jobs(counts: dict[int, int]) -> str:
    return ", ".join(f"sweep {s} ({n} job(s))" for s, n in sorted(counts.items()))


@click.command()
@click.argument("sweep_id", type=int, required=False)
@click.option("--job", "job_ids", type=int, multiple=True,
              help="Cancel this job instead of a sweep (repeatable).")
@click.pass_obj
def cancel(settings: Settings, sweep_id: int | None, job_ids: tuple[int, ...]) -> None:
    """Cancel SWEEP_ID (or the jobs given with --job): queued jobs never start, running ones
    stop within a denoising step."""
    from sdfarm.usecases.farm import cancel as cancel_jobs

    if (sweep_id is None) == (not job_ids):
        raise click.UsageError("give a SWEEP_ID or --job JOB_ID (not both)")
    result = cancel_jobs(settings, sweep_id=sweep_id, job_ids=list(job_ids) or None)
    what = f"sweep {sweep_id}" if sweep_id is not None else f"job(s) {', '.join(map(str, job_ids))}"
    click.echo(f"{what}: canceled {result.queued} queued and {result.running} running job(s)")


@click.command()
@click.argument("sweep_id", type=int)
@click.pass_obj
def retry(settings: Settings, sweep_id: int) -> None:
    """Put SWEEP_ID's failed and canceled jobs back in the queue (attempts reset)."""
    from sdfarm.usecases.farm import retry as retry_sweep

    n = retry_sweep(settings, sweep_id)
    click.echo(f"sweep {sweep_id}: {n} job(s) queued again")


COMMANDS = [submit, worker, watch, status, recover, cancel, retry]
