"""A Plan: the sweep's images in render order, cut into batches. Pure, and cheap to build.

``sdfarm plan`` prints it; ``dispatch.py`` records it and hands the batches to an executor.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sdfarm.scheduler.axes import Axis
from sdfarm.scheduler.batching import make_batches, order_specs
from sdfarm.scheduler.expand import Cell, expand_job
from sdfarm.scheduler.gridformat import grid_json
from sdfarm.scheduler.jobfile import JobFile
from sdfarm.spec import RenderSpec


@dataclass(frozen=True)
class Plan:
    job: JobFile
    #: Every image, in render order.
    specs: tuple[RenderSpec, ...]
    #: Batches as index lists into :attr:`specs`, in render order.
    batches: tuple[tuple[int, ...], ...]
    #: The grid cell of each spec (same order); empty for a plan not expanded from a job file.
    cells: tuple[Cell, ...] = ()
    #: (prompt, negative prompt) of each prompt index of :attr:`cells`.
    prompts: tuple[tuple[str, str], ...] = ()
    #: The seeds every cell is rendered with (empty when a seed axis sets them).
    seeds: tuple[int, ...] = ()
    #: Config folder of each model axis value that needs one (single-file checkpoints).
    model_configs: Mapping[str, str | None] = field(default_factory=dict)
    #: ``specs[i].key`` for every i, hashed once (recording looks each key up, then stores it).
    keys: tuple[str, ...] = ()

    @property
    def images(self) -> int:
        return len(self.specs)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.specs)

    @property
    def axes(self) -> tuple[Axis, ...]:
        return self.job.axes

    def key_list(self) -> tuple[str, ...]:
        return self.keys or tuple(s.key for s in self.specs)

    def model_config_of(self, spec: RenderSpec) -> str | None:
        return self.model_configs.get(spec.model, self.job.model_config)

    def without(self, done: Collection[int]) -> Plan:
        """The same images, with batches cut again over those not in ``done`` (indices), so
        that resuming does not leave half-empty forward passes."""
        keep = [i for i in range(len(self.specs)) if i not in done]
        batches = make_batches(self.specs, keep, self.job.batch_size)
        return replace(self, batches=tuple(tuple(b) for b in batches))

    def grid_json(self) -> dict[str, Any] | None:
        """What ``Sweep.axes`` stores (``sdfarm.scheduler.gridformat``)."""
        return grid_json(self.axes, len(self.prompts), len(self.seeds))


def make_plan(job: JobFile, model_hash: str | None = None,
              model_hashes: Mapping[str, str | None] | None = None,
              model_configs: Mapping[str, str | None] | None = None,
              families: Mapping[str, tuple[str, str]] | None = None) -> Plan:
    """Expand ``job`` and put the images in render order, in batches."""
    expansion = expand_job(job, model_hash, model_hashes, families)
    groups = [s.batch_group for s in expansion.specs]  # once: sorting and cutting both need them
    order = order_specs(expansion.specs, groups)
    specs = tuple(expansion.specs[i] for i in order)
    cells = tuple(expansion.cells[i] for i in order)
    batches = make_batches(specs, range(len(specs)), job.batch_size, [groups[i] for i in order])
    return Plan(job=job, specs=specs, batches=tuple(tuple(b) for b in batches), cells=cells,
                prompts=expansion.prompts, seeds=expansion.seeds,
                model_configs=dict(model_configs or {}), keys=tuple(s.key for s in specs))
