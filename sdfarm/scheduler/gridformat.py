"""The JSON a sweep stores of its grid (``Sweep.axes``): written by the planner, read when a
grid is drawn, so a grid needs nothing but the database. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sdfarm.errors import SdfarmError

#: Version of the JSON; readers refuse a format they do not know.
GRID_FORMAT = 1
#: The product order of a sweep's images, outermost first (``sdfarm.scheduler.expand``).
PRODUCT_ORDER = ("prompt", "extra", "z", "y", "x", "seed")


@dataclass(frozen=True)
class GridAxis:
    slot: str
    param: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class StoredGrid:
    axes: tuple[GridAxis, ...]
    #: How many prompt pairs and seeds the sweep's product has (0 seeds: a seed axis).
    prompts: int
    seeds: int


def grid_json(axes: Sequence[Any], prompts: int, seeds: int) -> dict[str, Any] | None:
    """What ``Sweep.axes`` stores for these planned axes; ``None`` for a sweep without axes."""
    if not axes:
        return None
    return {
        "format": GRID_FORMAT,
        "order": list(PRODUCT_ORDER),
        "axes": [{"slot": a.slot, "param": a.param, "key": a.key,
                  "values": [list(v) if isinstance(v, tuple) else v for v in a.values],
                  "labels": list(a.labels)} for a in axes],
        "prompts": prompts,
        "seeds": seeds,
    }


def read_grid_json(meta: dict[str, Any] | None, sweep_id: int) -> StoredGrid:
    """The stored grid of sweep ``sweep_id``, or an error saying why there is none."""
    if not meta:
        raise SdfarmError(f"sweep {sweep_id} has no axes, so there is no grid to draw; "
                          "add an [axes] table to the job file for a grid")
    if meta.get("format") != GRID_FORMAT:
        raise SdfarmError(f"sweep {sweep_id} stores its axes in format {meta.get('format')!r}; "
                          f"this sdfarm reads format {GRID_FORMAT}")
    axes = tuple(GridAxis(a["slot"], a["param"], tuple(a["labels"])) for a in meta["axes"])
    return StoredGrid(axes, meta.get("prompts", 1), meta.get("seeds", 0))
