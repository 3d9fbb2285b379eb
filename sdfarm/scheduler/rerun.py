"""A rerun as a Plan: the job again, exactly, or with some parameters changed. Pure.

When the original image shared a forward pass, an exact rerun rebuilds that whole pass in the
same order: a seed's low bits depend on its neighbours in the pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdfarm.scheduler.jobfile import JobFile
from sdfarm.scheduler.plan import Plan
from sdfarm.spec import RenderSpec


def rerun_plan(job_id: int, specs: Sequence[RenderSpec], *, model_config: str | None,
               allow_pickle: bool) -> Plan:
    """One forward pass of ``specs`` (the job, or its original pass), recorded as a new sweep."""
    first = specs[0]
    job = JobFile(path=f"rerun of job {job_id}", text="", name=f"rerun-{job_id}",
                  base=first.replace(seed=0), batch_size=len(specs),
                  seeds=[s.seed for s in specs], sweep_seed=0, model_config=model_config,
                  allow_pickle=allow_pickle)
    return Plan.one_pass(job, specs)
