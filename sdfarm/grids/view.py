"""The interactive grid viewer's model: any varying parameter on X, Y or pages. Pure.

``sdfarm.grids.model`` lays a sweep out as its job file's axes say. The viewer lets a user
choose again: any parameter that takes more than one value among the sweep's jobs can go on
X, Y or pages, whether or not the file made it an axis (the seed of a two-seed cfg sweep, the
prompt of a prompt list). What is left varying besides the choices splits pages, so two jobs
never land in one cell.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from sdfarm.errors import SdfarmError
from sdfarm.grids.model import GridJob
from sdfarm.params import PARAMS
from sdfarm.scheduler.axes import axis_label
from sdfarm.scheduler.gridformat import GridAxis

#: The parameters a job's spec can vary in besides the table's: its size (both sides at once,
#: as a size axis writes them) and its LoRA set. Width and height alone are covered by size.
_SPEC_DIMENSIONS = ("size", "loras")
#: Width and height alone are covered by size.
_LEFT_OUT = frozenset({"width", "height"})
#: What the viewer names when the whole sweep shares it (what the grid is "of").
_SHARED = ("model", "prompt", "negative_prompt", "sampler")


class GridAxisError(SdfarmError):
    """An axis the sweep does not vary, asked for X, Y or pages."""


@dataclass(frozen=True)
class ViewAxis:
    """One parameter that varies among the sweep's jobs, with its values in plan order."""

    #: What the URL names it by: the parameter ("cfg", "seed", "size", "prompt_sr").
    name: str
    #: The parameter's label in the table ("CFG"), for the selectors.
    title: str
    #: One label per value, in plan order ("CFG: 7.5").
    labels: tuple[str, ...]
    #: Whether the job file made it an axis (then its slot: "x", "y", "z", "extra1").
    slot: str | None
    #: Each job's value index, by job id.
    index: dict[int, int]


@dataclass(frozen=True)
class ViewCell:
    column: int
    row: int
    job_id: int
    status: str

    @property
    def done(self) -> bool:
        return self.status == "done"


@dataclass(frozen=True)
class ViewPage:
    #: What is the same on every cell of the page: its page-axis value first ("Seed: 7"),
    #: then the other varying parameters that do not change across this page.
    fixed: tuple[str, ...]
    #: (column, row) -> cell; a missing key is a cell with no job.
    cells: dict[tuple[int, int], ViewCell]


@dataclass(frozen=True)
class GridView:
    axes: tuple[ViewAxis, ...]
    x: str | None
    y: str | None
    page: str | None
    columns: tuple[str, ...]
    rows: tuple[str, ...]
    pages: tuple[ViewPage, ...]
    #: What every job of the sweep shares, of the model, prompts and sampler ("Prompt: ...").
    shared: tuple[str, ...] = ()

    @property
    def cells(self) -> int:
        return sum(len(p.cells) for p in self.pages)


def view_axes(stored: Sequence[GridAxis], jobs: Sequence[GridJob]) -> tuple[ViewAxis, ...]:
    """Every parameter that varies among ``jobs`` (given in plan order): the file's axes first
    (their labels and order as planned), then the others in table order. A parameter that
    varies exactly as an earlier one does (the prompt along a Prompt S/R axis, width along a
    size axis) is left out: choosing it would show the same grid."""
    axes: list[ViewAxis] = []
    for axis in stored:
        twice = any(a.name == axis.param for a in axes)  # two LoRA weight axes
        name = f"{axis.param}.{axis.slot}" if twice else axis.param
        indices = {j.job_id: _slot_index(j, axis.slot) for j in jobs}
        axes.append(ViewAxis(name, _title(axis.param), axis.labels, axis.slot, indices))
    taken = {a.name for a in axes}
    for name, value_of in _spec_dimensions():
        if name in taken:
            continue
        axis = _axis_from_specs(name, value_of, jobs)
        if axis is not None and not any(_same_partition(axis, a) for a in axes):
            axes.append(axis)
    return tuple(axes)


def build_view(axes: Sequence[ViewAxis], jobs: Sequence[GridJob], *, x: str | None,
               y: str | None, page: str | None) -> GridView:
    """The pages of ``jobs`` with ``x`` on columns, ``y`` on rows and ``page`` on pages (each
    an axis name or ``None``). Every other varying axis that the choices do not determine
    splits pages too, and jobs that would still share a cell go to pages of their own."""
    by_name = {a.name: a for a in axes}
    for chosen in (x, y, page):
        if chosen is not None and chosen not in by_name:
            raise GridAxisError(f"{chosen!r} is not an axis of this sweep; allowed: "
                                f"{', '.join(by_name) or 'none (nothing varies)'}")
    ax, ay = by_name.get(x) if x else None, by_name.get(y) if y else None
    named = [c for c in (x, y, page) if c is not None]
    if len(set(named)) < len(named):
        raise GridAxisError(f"X, Y and pages must be different axes, got {', '.join(named)}")
    splitters = [by_name[page]] if page else []
    for axis in axes:
        if axis.name in named:
            continue
        if not _determined(axis, [a for a in (ax, ay) if a] + splitters, jobs):
            splitters.append(axis)

    def at(axis: ViewAxis | None, job: GridJob) -> int:
        return axis.index[job.job_id] if axis is not None else 0

    grouped: dict[tuple[int, ...], dict[tuple[int, int], ViewCell]] = {}
    copies: dict[tuple, int] = {}
    for job in jobs:
        key = tuple(at(a, job) for a in splitters)
        cell = (at(ax, job), at(ay, job))
        # The same parameters twice (a prompt listed twice): a page of its own, never lost.
        copy = copies.get((key, cell), 0)
        copies[(key, cell)] = copy + 1
        grouped.setdefault((*key, copy), {})[cell] = ViewCell(*cell, job.job_id, job.status)
    others = [a for a in axes if a not in (ax, ay)]
    pages = tuple(ViewPage(_fixed(others, splitters, cells), cells)
                  for _, cells in sorted(grouped.items()))
    return GridView(tuple(axes), x, y, page, ax.labels if ax else ("",),
                    ay.labels if ay else ("",), pages, _shared(jobs))


def _shared(jobs: Sequence[GridJob]) -> tuple[str, ...]:
    if not jobs:
        return ()
    shared = []
    for name in _SHARED:
        values = {getattr(j.spec, name) for j in jobs}
        if len(values) == 1 and (value := values.pop()):  # an empty negative says nothing
            shared.append(_label(name, value))
    return tuple(shared)


def default_choice(axes: Sequence[ViewAxis]) -> tuple[str | None, str | None, str | None]:
    """The job file's own x, y and z (or none where it has no such axis). A file without axes
    (seeds or prompts only) gets its first varying parameter on X, rather than a page per
    image."""
    slots = {a.slot: a.name for a in axes if a.slot}
    if not slots and axes:
        return axes[0].name, None, None
    return slots.get("x"), slots.get("y"), slots.get("z")


def _fixed(others: list[ViewAxis], splitters: list[ViewAxis],
           cells: dict[tuple[int, int], ViewCell]) -> tuple[str, ...]:
    ids = {c.job_id for c in cells.values()}
    fixed = []
    for axis in sorted(others, key=lambda a: a not in splitters):
        values = {axis.index[i] for i in ids}
        if len(values) == 1:
            fixed.append(axis.labels[values.pop()])
    return tuple(fixed)


def _determined(axis: ViewAxis, by: list[ViewAxis], jobs: Sequence[GridJob]) -> bool:
    """Whether ``axis``' value follows from the values of ``by`` on every job."""
    seen: dict[tuple[int, ...], int] = {}
    for job in jobs:
        key = tuple(a.index[job.job_id] for a in by)
        if seen.setdefault(key, axis.index[job.job_id]) != axis.index[job.job_id]:
            return False
    return True


def _same_partition(a: ViewAxis, b: ViewAxis) -> bool:
    pairs = {(a.index[i], b.index[i]) for i in a.index}
    return len(pairs) == len(set(a.index.values())) == len(set(b.index.values()))


def _slot_index(job: GridJob, slot: str) -> int:
    if slot == "x":
        return job.x
    if slot == "y":
        return job.y
    if slot == "z":
        return job.z or 0
    return job.extra[int(slot.removeprefix("extra")) - 1]


def _title(param: str) -> str:
    if param in PARAMS:
        return PARAMS[param].label
    return {"size": "Size", "prompt_sr": "Prompt S/R", "lora": "LoRA", "loras": "LoRA",
            "lora_weight": "LoRA weight"}.get(param, param)


def _spec_dimensions() -> list[tuple[str, Callable[[GridJob], Hashable]]]:
    dims: list[tuple[str, Callable[[GridJob], Hashable]]] = []
    for name, param in PARAMS.items():
        if not param.derived and name not in _LEFT_OUT:
            dims.append((name, lambda job, name=name: getattr(job.spec, name)))
    dims.append(("size", lambda job: (job.spec.width, job.spec.height)))
    dims.append(("loras", lambda job: job.spec.loras))
    return dims


def _axis_from_specs(name: str, value_of: Callable[[GridJob], Hashable],
                     jobs: Sequence[GridJob]) -> ViewAxis | None:
    order: dict[Hashable, int] = {}
    index = {}
    for job in jobs:
        index[job.job_id] = order.setdefault(value_of(job), len(order))
    if len(order) < 2:
        return None
    return ViewAxis(name, _title(name), tuple(_label(name, v) for v in order), None, index)


def _label(name: str, value: object) -> str:
    if name == "loras":
        return f"LoRA: {value or '(none)'}"
    if name == "init_image":
        return f"Init image: {value or '(none)'}"
    return axis_label(name, value)

