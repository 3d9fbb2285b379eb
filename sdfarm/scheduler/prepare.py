"""From a job file on disk to a Plan: validate, resolve the model reference, expand. Pure
(no torch): ``sdfarm plan`` runs exactly this."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sdfarm.errors import JobFileError, ModelError
from sdfarm.modelref import ModelRef, model_hash, parse_model_ref
from sdfarm.scheduler.jobfile import JobFile, load_job_file
from sdfarm.scheduler.plan import Plan, make_plan


def resolve_model(job: JobFile, model_dir: Path) -> tuple[JobFile, ModelRef]:
    """The job with its model reference made absolute (relative paths are relative to the job
    file), so that any worker finds the same model."""
    try:
        mref = parse_model_ref(job.model, model_dir, model_config=_abs(job, job.model_config),
                               allow_pickle=job.allow_pickle, base_dir=Path(job.path).parent)
    except ModelError as exc:
        raise JobFileError(job.path, "model", str(exc)) from None
    model = str(mref.path) if mref.kind in ("file", "folder") else job.model
    config = str(mref.config) if mref.config else None
    return dataclasses.replace(job, model=model, model_config=config), mref


def _abs(job: JobFile, path: str | None) -> str | None:
    if path is None:
        return None
    return str((Path(job.path).parent / Path(path).expanduser()).resolve())


def plan_job(job: JobFile, mref: ModelRef, model_dir: Path) -> Plan:
    """Expand; the model hash enters each job's key when the weights are on this machine."""
    return make_plan(job, model_hash(mref, model_dir))


def load_plan(path: str | Path, model_dir: Path) -> Plan:
    job, mref = resolve_model(load_job_file(path), model_dir)
    return plan_job(job, mref, model_dir)
