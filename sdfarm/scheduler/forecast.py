"""What rendering a plan would do against this database: images reused from earlier sweeps,
images and steps left to render, batches, and a time estimate from measured seconds per step.

``sdfarm plan`` prints it. No torch; the database is only read, and not created when absent.
"""

from __future__ import annotations

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


def forecast(plan: Plan, database_url: str, *, force: bool = False) -> Forecast:
    reused: set[int] = set()
    rates: dict[tuple[str | None, int, int], float] = {}
    from sdfarm.db.engine import database_exists

    if database_exists(database_url):
        from sdfarm.db.engine import session_factory
        from sdfarm.db.sweeps import reusable_images, seconds_per_step

        with session_factory(database_url)() as session:
            if not force:
                keys = plan.key_list()
                found = reusable_images(session, keys)
                reused = {i for i, key in enumerate(keys) if key in found}
            groups = {(s.model_hash, s.width, s.height) for s in plan.specs}
            rates = seconds_per_step(session, groups)
    todo = [s for i, s in enumerate(plan.specs) if i not in reused]
    estimate = 0.0
    unmeasured = 0
    for spec in todo:
        rate = rates.get((spec.model_hash, spec.width, spec.height))
        if rate is None:
            unmeasured += 1
        else:
            estimate += rate * spec.steps
    # Nothing to render costs nothing; otherwise an estimate needs at least one measurement.
    known = not todo or len(todo) > unmeasured
    return Forecast(
        images=plan.images, reused=len(reused), to_render=len(todo),
        batches=len(plan.without(reused).batches) if reused else len(plan.batches),
        total_steps=plan.total_steps, steps_to_render=sum(s.steps for s in todo),
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
