"""What rendering a plan would do against this database: images reused from earlier sweeps,
images and steps left to render, batches, and a time estimate from measured seconds per step.

``sdfarm plan`` prints it. Pure: the caller reads the reused images and the measured rates
from the database (``sdfarm.usecases.render.plan_outlook``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass

from sdfarm.scheduler.plan import Plan


@dataclass(frozen=True)
class Forecast:
    images: int
    #: Images whose key already has a done image on disk: recorded, not rendered.
    reused: int
    to_render: int
    #: Forward passes of the images to render.
    batches: int
    total_steps: int
    steps_to_render: int
    #: Seconds for the images to render whose model and size have measurements.
    estimate_seconds: float | None
    #: Images to render with no measurement for their model hash and size yet.
    unmeasured_images: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


#: Measured render seconds per denoising step, by (model hash, width, height).
Rates = Mapping[tuple[str | None, int, int], float]


def rate_groups(plan: Plan) -> set[tuple[str | None, int, int]]:
    """The (model hash, width, height) groups whose measured rates the estimate needs."""
    return {(s.model_hash, s.width, s.height) for s in plan.rows}


def forecast(plan: Plan, reused: Collection[int], rates: Rates) -> Forecast:
    """What rendering ``plan`` would do, given the indices of its images already rendered
    elsewhere (``reused``) and the measured ``rates``."""
    # Row by row: every image of a row has its model, size and steps (a million images of a
    # hundred rows are a hundred lookups).
    per_row = plan.per_row
    estimate = 0.0
    unmeasured = todo = steps = 0
    for r, spec in enumerate(plan.rows):
        first = r * per_row
        images = per_row - sum(1 for i in range(first, first + per_row) if i in reused) \
            if reused else per_row
        todo += images
        steps += images * spec.steps
        rate = rates.get((spec.model_hash, spec.width, spec.height))
        if rate is None:
            unmeasured += images
        else:
            estimate += rate * spec.steps * images
    # Nothing to render costs nothing; otherwise an estimate needs at least one measurement.
    known = not todo or todo > unmeasured
    return Forecast(
        images=plan.images, reused=len(reused), to_render=todo,
        batches=len(plan.without(reused).batches) if reused else len(plan.batches),
        total_steps=plan.total_steps, steps_to_render=steps,
        estimate_seconds=round(estimate, 3) if known else None,
        unmeasured_images=unmeasured,
    )


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m"
