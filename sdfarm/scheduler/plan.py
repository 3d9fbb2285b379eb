"""A Plan: the sweep's images in render order, cut into batches. Pure, and cheap to build.

``sdfarm plan`` prints it; ``dispatch.py`` records it and hands the batches to an executor.

A plan holds its images as *rows* times *seeds*: seeds are the innermost dimension and never
change a batch group, so every row stands for one image per seed, next to each other in render
order. A million images of a hundred cells and ten thousand seeds are a hundred rows; the
images, their keys, cells and batches are sequences computed from them when read, so that
recording a huge sweep streams instead of holding a million objects (issue 13, item C).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, overload

from sdfarm.scheduler.axes import Axis
from sdfarm.scheduler.batching import order_specs
from sdfarm.scheduler.expand import Cell, LoraHashes, expand_job
from sdfarm.scheduler.gridformat import grid_json
from sdfarm.scheduler.jobfile import JobFile
from sdfarm.spec import SPEC_FIELDS, RenderSpec, key_of

T = TypeVar("T")
_SEED_AT = SPEC_FIELDS.index("seed")


class _Computed(Sequence[T]):
    """A read-only sequence whose items are computed when read; equal to any sequence with the
    same items (tuples included), as the tuples it replaces were."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {len(self)}>"


@dataclass(frozen=True)
class Plan:
    job: JobFile
    #: The images without their seed, in render order: each stands for one image per seed of
    #: :attr:`seeds` (seeds innermost), or for one image with its own seed when there are no
    #: seeds (a seed axis, a rerun).
    rows: tuple[RenderSpec, ...]
    #: Index in :attr:`rows` where each run of rows sharing a batch group starts (the first is
    #: 0); a batch never spans two runs.
    runs: tuple[int, ...] = (0,)
    #: The grid cell of each row (seed index 0); empty for a plan not expanded from a job file.
    row_cells: tuple[Cell, ...] = ()
    #: (prompt, negative prompt) of each prompt index of :attr:`cells`.
    prompts: tuple[tuple[str, str], ...] = ()
    #: The seeds every row is rendered with (empty when a seed axis sets them).
    seeds: tuple[int, ...] = ()
    #: Config folder of each model axis value that needs one (single-file checkpoints).
    model_configs: Mapping[str, str | None] = field(default_factory=dict)
    #: Images left out of every batch: already rendered (resume, :meth:`without`).
    skip: frozenset[int] = frozenset()
    #: Keys, computed once on first read and kept as 16 bytes each.
    _keys: _Keys | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self._keys is None:
            object.__setattr__(self, "_keys", _Keys(self.specs))

    @property
    def per_row(self) -> int:
        """Images each row stands for."""
        return len(self.seeds) or 1

    @property
    def images(self) -> int:
        return len(self.rows) * self.per_row

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.rows) * self.per_row

    @property
    def axes(self) -> tuple[Axis, ...]:
        return self.job.axes

    @property
    def specs(self) -> Sequence[RenderSpec]:
        """Every image, in render order."""
        return _Images(self.rows, self.seeds)

    @property
    def cells(self) -> Sequence[Cell]:
        """The grid cell of each image (same order); empty without row cells."""
        return _Cells(self.row_cells, len(self.seeds)) if self.row_cells else ()

    @property
    def keys(self) -> Sequence[str]:
        """``specs[i].key`` for every i, hashed once (recording looks each key up, then
        stores it)."""
        assert self._keys is not None
        return self._keys

    def key_list(self) -> Sequence[str]:
        return self.keys

    @property
    def batches(self) -> Sequence[tuple[int, ...]]:
        """Batches as index tuples into :attr:`specs`, in render order."""
        return _Batches(self)

    def batch_indices(self) -> Iterator[int]:
        """The batch of every image, in image order; -1 for an image in no batch."""
        current = -1
        for b, batch in enumerate(self.batches):
            for i in batch:
                while current + 1 < i:
                    current += 1
                    yield -1
                current = i
                yield b
        yield from itertools.repeat(-1, self.images - 1 - current)

    def model_config_of(self, spec: RenderSpec) -> str | None:
        return self.model_configs.get(spec.model, self.job.model_config)

    def without(self, done: Collection[int]) -> Plan:
        """The same images, with batches cut again over those not in ``done`` (indices), so
        that resuming does not leave half-empty forward passes."""
        return replace(self, skip=frozenset(done))

    def grid_json(self) -> dict[str, Any] | None:
        """What ``Sweep.axes`` stores (``sdfarm.scheduler.gridformat``)."""
        return grid_json(self.axes, len(self.prompts), len(self.seeds))

    @classmethod
    def one_pass(cls, job: JobFile, specs: Sequence[RenderSpec]) -> Plan:
        """``specs`` as given (each with its own seed), in one batch."""
        return cls(job=job, rows=tuple(specs), runs=(0,))


class _Images(_Computed[RenderSpec]):
    def __init__(self, rows: tuple[RenderSpec, ...], seeds: tuple[int, ...]) -> None:
        self.rows, self.seeds = rows, seeds

    def __len__(self) -> int:
        return len(self.rows) * (len(self.seeds) or 1)

    @overload
    def __getitem__(self, i: int) -> RenderSpec: ...
    @overload
    def __getitem__(self, i: slice) -> list[RenderSpec]: ...
    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not self.seeds:
            return self.rows[i]
        row, s = divmod(range(len(self))[i], len(self.seeds))
        return dataclasses.replace(self.rows[row], seed=self.seeds[s])

    def __iter__(self) -> Iterator[RenderSpec]:
        if not self.seeds:
            yield from self.rows
            return
        for row in self.rows:
            # Built positionally: dataclasses.replace per image costs twice as much.
            fields = [getattr(row, name) for name in SPEC_FIELDS]
            for seed in self.seeds:
                fields[_SEED_AT] = seed
                yield RenderSpec(*fields)


class _Cells(_Computed[Cell]):
    def __init__(self, row_cells: tuple[Cell, ...], seeds: int) -> None:
        self.row_cells, self.seeds = row_cells, seeds

    def __len__(self) -> int:
        return len(self.row_cells) * (self.seeds or 1)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not self.seeds:
            return self.row_cells[i]
        row, s = divmod(range(len(self))[i], self.seeds)
        return dataclasses.replace(self.row_cells[row], seed=s)

    def __iter__(self) -> Iterator[Cell]:
        if not self.seeds:
            yield from self.row_cells
            return
        for c in self.row_cells:
            for s in range(self.seeds):
                yield Cell(c.prompt, s, c.x, c.y, c.z, c.extra)


class _Keys(_Computed[str]):
    """Keys as 16 bytes each (a million keys: 16 MB, not 110 MB of strings), hashed on first
    read. A row's key text is built once and only its seed changes per image."""

    _SIZE = 16

    def __init__(self, specs: _Images) -> None:
        self._specs: _Images | None = specs
        self._count = len(specs)
        self._digests = b""

    def _all(self) -> bytes:
        if self._specs is not None:
            digests = bytearray()
            rows, seeds = self._specs.rows, self._specs.seeds
            for n, row in enumerate(rows):
                around = _around_seed(row) if seeds else None
                if around is None:  # one image a row, or a text the mark cannot split
                    images = (self._specs[n * len(seeds) + k] for k in range(len(seeds))) \
                        if seeds else (row,)
                    for spec in images:
                        digests += bytes.fromhex(spec.key)
                    continue
                before, after = around
                for seed in seeds:
                    digests += bytes.fromhex(key_of(f"{before}{seed}{after}"))
            self._digests, self._specs = bytes(digests), None
        return self._digests

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(self._count)[i]
        return self._all()[i * self._SIZE:(i + 1) * self._SIZE].hex()

    def __iter__(self) -> Iterator[str]:
        digests, size = self._all(), self._SIZE
        for start in range(0, len(digests), size):
            yield digests[start:start + size].hex()


#: A seed no job file can hold (above 2^63), to find where a row's seed sits in its key text.
_MARK = 2**64 + 12345


def _around_seed(row: RenderSpec) -> tuple[str, str] | None:
    """A row's key text before and after its seed (a seed is written as its digits); ``None``
    if the mark is not found exactly once (a prompt holding those very digits)."""
    text = row.replace(seed=_MARK).key_text()
    if text.count(str(_MARK)) != 1:
        return None
    before, _, after = text.partition(str(_MARK))
    return before, after


class _Batches(_Computed[tuple[int, ...]]):
    """Each run of images sharing a batch group cut into batches of at most ``batch_size``,
    leaving out the skipped images; computed from the runs, or listed when images are skipped."""

    def __init__(self, plan: Plan) -> None:
        size, per_row = plan.job.batch_size, plan.per_row
        bounds = [r * per_row for r in plan.runs] + [plan.images]
        self._runs = [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
        self._size = size
        self._listed: list[tuple[int, ...]] | None = None
        if plan.skip:
            skip = plan.skip
            listed: list[tuple[int, ...]] = []
            for start, stop in self._runs:
                kept = [i for i in range(start, stop) if i not in skip]
                listed += [tuple(kept[k:k + size]) for k in range(0, len(kept), size)]
            self._listed = listed
        # Batches before each run, to find batch n without walking them all.
        self._before = list(itertools.accumulate(
            (-(-(b - a) // size) for a, b in self._runs), initial=0))

    def __len__(self) -> int:
        return len(self._listed) if self._listed is not None else self._before[-1]

    def __getitem__(self, n):  # type: ignore[no-untyped-def]
        if isinstance(n, slice):
            return [self[j] for j in range(*n.indices(len(self)))]
        if self._listed is not None:
            return self._listed[n]
        n = range(len(self))[n]
        run = bisect.bisect_right(self._before, n) - 1
        start, stop = self._runs[run]
        first = start + (n - self._before[run]) * self._size
        return tuple(range(first, min(first + self._size, stop)))

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        if self._listed is not None:
            yield from self._listed
            return
        for start, stop in self._runs:
            for first in range(start, stop, self._size):
                yield tuple(range(first, min(first + self._size, stop)))


def make_plan(job: JobFile, model_hash: str | None = None,
              model_hashes: Mapping[str, str | None] | None = None,
              model_configs: Mapping[str, str | None] | None = None,
              families: Mapping[str, tuple[str, str]] | None = None,
              lora_hashes: LoraHashes | None = None,
              derive: Callable[[RenderSpec], RenderSpec] | None = None) -> Plan:
    """Expand ``job`` and put the images in render order, in batches. ``derive`` completes
    each image with what its files say (``scheduler.extrafiles``: VAE and embedding hashes)."""
    expansion = expand_job(job, model_hash, model_hashes, families, lora_hashes)
    expanded = expansion.rows if derive is None else [derive(r) for r in expansion.rows]
    groups = [s.batch_group for s in expanded]  # once: sorting and cutting both need them
    order = order_specs(expanded, groups)
    rows = tuple(expanded[i] for i in order)
    runs = tuple(n for n, i in enumerate(order) if n == 0 or groups[i] != groups[order[n - 1]])
    return Plan(job=job, rows=rows, runs=runs or (0,),
                row_cells=tuple(expansion.row_cells[i] for i in order),
                prompts=expansion.prompts, seeds=expansion.seeds,
                model_configs=dict(model_configs or {}))
