"""A Plan: the sweep's images in render order, cut into batches. Pure, and cheap to build.

``sdfarm plan`` prints it; ``dispatch.py`` records it and hands the batches to an executor.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdfarm.scheduler.batching import make_batches, order_specs
from sdfarm.scheduler.expand import expand
from sdfarm.scheduler.jobfile import JobFile
from sdfarm.spec import RenderSpec


@dataclass(frozen=True)
class Plan:
    job: JobFile
    #: Every image, in render order.
    specs: tuple[RenderSpec, ...]
    #: Batches as index lists into :attr:`specs`, in render order.
    batches: tuple[tuple[int, ...], ...]

    @property
    def images(self) -> int:
        return len(self.specs)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.specs)


def make_plan(job: JobFile, model_hash: str | None = None) -> Plan:
    specs = expand(job, model_hash)
    order = order_specs(specs)
    ordered = [specs[i] for i in order]
    batches = make_batches(ordered, range(len(ordered)), job.batch_size)
    return Plan(job=job, specs=tuple(ordered), batches=tuple(tuple(b) for b in batches))
