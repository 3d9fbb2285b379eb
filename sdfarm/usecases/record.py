"""Recording a plan: the sweep and every job in one transaction, reusing done images (resume)."""

from __future__ import annotations

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.sweeps import FARM, Executor, record_plan, reusable_images
from sdfarm.db.waiting import jobs_in_flight, serialize_submits
from sdfarm.files import place_image
from sdfarm.scheduler.plan import Plan


def record(settings: Settings, plan: Plan, *, kind: str = "render",
           rerun_of_job_id: int | None = None, priority: int = 0, force: bool = False,
           executor: Executor = FARM) -> int:
    """One transaction: the sweep and every job, or nothing. Returns the sweep id.

    Resume: a job whose key already has a done image on disk is recorded done, its image
    linked into the new sweep's folder, and is not queued; the rest are batched again. A
    rerun, or ``force``, renders every job. A farm sweep's job whose key another farm sweep is
    rendering now waits for that job instead (``sdfarm.db.waiting``). ``executor`` says who
    renders it: only the farm's sweeps ever reach the broker.
    """
    factory = session_factory(settings.database_url)
    with factory.begin() as session:
        reuse, waiting = {}, {}
        if not force and kind != "rerun":
            keys = plan.key_list()
            if executor.kind == "farm":
                serialize_submits(session)
            found = reusable_images(session, keys)
            reuse = {i: found[key] for i, key in enumerate(keys) if key in found}
            if executor.kind == "farm":
                # A local render renders everything itself: it must never wait on the farm.
                rendering = jobs_in_flight(session, (k for i, k in enumerate(keys)
                                                     if i not in reuse))
                waiting = {i: rendering[key] for i, key in enumerate(keys)
                           if key in rendering and i not in reuse}
        if reuse:
            plan = plan.without(reuse)
        sweep = record_plan(session, plan, settings.output_dir, kind=kind,
                            rerun_of_job_id=rerun_of_job_id, priority=priority, reuse=reuse,
                            place=place_image, executor=executor, waiting=waiting)
        return sweep.id
