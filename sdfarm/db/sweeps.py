"""Recording a planned sweep: one Sweep row and one Job row per image, in one transaction."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from sdfarm.db.models import Job, JobStatus, Sweep, utcnow

if TYPE_CHECKING:
    from sdfarm.scheduler.plan import Plan


def slug(text: str, limit: int = 48) -> str:
    """A name safe in any file system: user text never reaches a path unsanitised."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return (s[:limit].rstrip("-._") or "sweep")


def image_name(seq: int, seed: int) -> str:
    return f"{seq:05d}-{seed}.png"


def record_plan(session: Session, plan: Plan, output_root: Path, *, kind: str = "render",
                rerun_of_job_id: int | None = None, priority: int = 0) -> Sweep:
    """Insert the sweep and all its jobs (bulk); returns the flushed Sweep."""
    job = plan.job
    sweep = Sweep(name=job.name, kind=kind, job_file_path=job.path, job_file_text=job.text,
                  output_dir="", sweep_seed=job.sweep_seed, batch_size=job.batch_size,
                  allow_pickle=job.allow_pickle, priority=priority,
                  rerun_of_job_id=rerun_of_job_id)
    session.add(sweep)
    session.flush()
    folder = output_root / f"{slug(job.name)}-{sweep.id}"
    sweep.output_dir = str(folder)
    now = utcnow()
    rows = []
    for batch_index, batch in enumerate(plan.batches):
        for i in batch:
            spec = plan.specs[i]
            rows.append({
                "sweep_id": sweep.id, "seq": i, "key": spec.key, "status": JobStatus.queued,
                "model": spec.model, "model_hash": spec.model_hash, "model_config": job.model_config,
                "prompt": spec.prompt, "negative_prompt": spec.negative_prompt, "seed": spec.seed,
                "sampler": spec.sampler, "steps": spec.steps, "cfg": spec.cfg,
                "width": spec.width, "height": spec.height, "clip_skip": spec.clip_skip,
                "batch_index": batch_index, "output_path": str(folder / image_name(i, spec.seed)),
                "attempts": 0, "created_at": now,
            })
    if rows:
        session.execute(insert(Job), rows)
    return sweep


def batch_job_ids(session: Session, sweep_id: int, statuses: tuple[JobStatus, ...] = (JobStatus.queued,)) -> list[list[int]]:
    """The sweep's jobs in those statuses, grouped by planned batch, in render order."""
    rows = session.execute(
        select(Job.batch_index, Job.id).where(Job.sweep_id == sweep_id, Job.status.in_(statuses))
        .order_by(Job.batch_index, Job.seq)
    )
    batches: dict[int, list[int]] = {}
    for batch_index, job_id in rows:
        batches.setdefault(batch_index, []).append(job_id)
    return list(batches.values())


def status_counts(session: Session, sweep_id: int) -> Counter[str]:
    rows = session.execute(
        select(Job.status, func.count()).where(Job.sweep_id == sweep_id).group_by(Job.status))
    return Counter({status.value: n for status, n in rows})
