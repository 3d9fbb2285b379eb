"""A farm sweep's grid, written by the worker that ends the sweep.

After each batch the worker asks the database, for each sweep with axes among the batch's
jobs, whether the sweep just ended with a grid still to write (``sdfarm.db.gridmarks``): one
worker's claim succeeds, that worker writes the grid. A ``retry`` that completes the sweep
later ends it again, and the grid is written again, without its canceled or failed cells.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sdfarm.config import Settings
from sdfarm.db.engine import DatabaseError, session_factory
from sdfarm.db.gridmarks import GridState, claim_grid, grid_state, release_grid, sweeps_with_axes
from sdfarm.grids.write import GridReport, write_grids

log = logging.getLogger(__name__)


def write_grids_of_ended_sweeps(settings: Settings, job_ids: Iterable[int]) -> list[GridReport]:
    """Write the grid of each sweep of ``job_ids`` that has just ended, unless another worker
    claimed it. Never raises: the jobs are recorded already, and ``sdfarm grid`` draws a grid
    by hand; what went wrong is logged."""
    reports: list[GridReport] = []
    try:
        factory = session_factory(settings.database_url)
        with factory() as session:
            sweep_ids = sweeps_with_axes(session, job_ids)
        for sweep_id in sweep_ids:
            with factory.begin() as session:
                mark = claim_grid(session, sweep_id)
            if mark is None:
                continue
            try:
                report = write_grids(settings, sweep_id)
            except BaseException:
                with factory.begin() as session:
                    release_grid(session, sweep_id, mark)
                raise
            log.info("wrote the grid of sweep %d: %s (%d of %d images)", sweep_id,
                     report.index, report.done, report.images)
            reports.append(report)
    except DatabaseError as exc:
        log.warning("could not check for finished sweeps' grids (database unreachable: %s); "
                    "`sdfarm grid SWEEP_ID` writes a grid by hand", exc)
    except Exception:
        log.exception("writing a finished sweep's grid failed; `sdfarm grid SWEEP_ID` writes it "
                      "by hand")
    return reports


def grid_state_of(settings: Settings, sweep_id: int) -> GridState | None:
    """Whether the sweep has a grid, where, and whether it shows every job's latest outcome."""
    with session_factory(settings.database_url)() as session:
        return grid_state(session, sweep_id)
