"""Job file -> RenderSpecs: one spec per image, every value resolved, each with its grid cell.
Pure.

The images are the product of, outermost first:

1. the prompts: every expansion of the prompt template, each paired with every expansion of
   the negative prompt (combinatorial mode), or N draws of each, paired in draw order (random
   mode);
2. the extra axes, the last ``[[axes.extra]]`` outermost;
3. the z axis, then y, then x;
4. the seeds (innermost; a seed axis replaces them).

Rendering order is ``batching.py``'s business: it sorts this product by cost, stably.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sdfarm.errors import JobFileError
from sdfarm.scheduler.axes import (
    PROMPT_AXES,
    Axis,
    apply_axis_value,
    check_prompt_sr,
    rewrite_prompt,
)
from sdfarm.scheduler.familydefaults import (
    Detected,
    check_families,
    defaulted_params,
    family_changes,
)
from sdfarm.scheduler.jobfile import MAX_IMAGES_LIMIT, MAX_PROMPTS, JobFile
from sdfarm.scheduler.loras import LoraError, LoraFields, lora_fields
from sdfarm.scheduler.promptsyntax import is_literal
from sdfarm.scheduler.seeds import resolve_seeds
from sdfarm.spec import SPEC_FIELDS, RenderSpec


@dataclass(frozen=True, slots=True)
class Cell:
    """Where one image sits in its sweep's product: an index along every dimension."""

    #: Index into :attr:`Expansion.prompts`.
    prompt: int
    #: Index into :attr:`Expansion.seeds` (always 0 when a seed axis sets the seed).
    seed: int
    x: int | None = None
    y: int | None = None
    z: int | None = None
    #: One index per extra axis, extra1 first.
    extra: tuple[int, ...] = ()


@dataclass(frozen=True)
class Expansion:
    """The product without its innermost dimension, the seeds: a million images of a hundred
    cells and ten thousand seeds are a hundred rows here, not a million objects."""

    #: One spec per (prompt, axes) cell, with seed 0 when :attr:`seeds` sets it.
    rows: list[RenderSpec]
    #: The grid cell of each row (seed index 0), same order.
    row_cells: list[Cell]
    #: (prompt, negative prompt) of each prompt index.
    prompts: tuple[tuple[str, str], ...]
    #: The seeds every row is rendered with; empty when a seed axis sets them (one image a row).
    seeds: tuple[int, ...]

    @property
    def specs(self) -> list[RenderSpec]:
        """Every image, in product order (built: for small plans and tests)."""
        if not self.seeds:
            return list(self.rows)
        return [dataclasses.replace(row, seed=seed) for row in self.rows for seed in self.seeds]

    @property
    def cells(self) -> list[Cell]:
        if not self.seeds:
            return list(self.row_cells)
        return [dataclasses.replace(cell, seed=s) for cell in self.row_cells
                for s in range(len(self.seeds))]


#: A LoRA's A1111 short hash by name (``LoraFolder.hash_of``): raises ``LoraError`` for a
#: name it cannot find.
LoraHashes = Callable[[str], str]


def expand(job: JobFile, model_hash: str | None = None,
           model_hashes: Mapping[str, str | None] | None = None,
           families: Mapping[str, Detected] | None = None,
           lora_hashes: LoraHashes | None = None) -> list[RenderSpec]:
    """Every image ``job`` describes, in the documented product order."""
    return expand_job(job, model_hash, model_hashes, families, lora_hashes).specs


def sub_seed(sweep_seed: int, purpose: str) -> int:
    """A seed for one kind of draw, derived from the sweep seed, so that drawing prompts does
    not shift the random seeds (or the other way round) and both are reproducible from it."""
    digest = hashlib.sha256(f"{sweep_seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def expand_job(job: JobFile, model_hash: str | None = None,
               model_hashes: Mapping[str, str | None] | None = None,
               families: Mapping[str, Detected] | None = None,
               lora_hashes: LoraHashes | None = None) -> Expansion:
    """The product, with the grid cell of every image.

    ``model_hash`` is the base model's; ``model_hashes`` maps each model axis value to its
    hash (``None`` where the weights are not on this machine yet). ``families`` maps models
    (the base model and each model axis value) to their detected (family, prediction); each
    image takes its model's family defaults (``familydefaults``). ``lora_hashes`` finds the
    LoRAs the final prompts name (a missing one is an error here, at plan time); without it
    their hashes are left empty.
    """
    axes = job.axes
    seed_axis = any(a.param == "seed" for a in axes)
    seeds = () if seed_axis else tuple(resolve_seeds(job.seeds, job.sweep_seed))
    _check_cap(job, len(seeds), None)  # before expanding prompts, which may take a while
    prompts = _prompt_pairs(job)
    _check_cap(job, len(seeds), len(prompts))
    for axis in axes:
        for prompt in dict.fromkeys(p for p, _ in prompts):
            check_prompt_sr(axis, prompt, lambda key, problem: JobFileError(job.path, key, problem))

    # Outermost first: extras (last one outermost), z, y, x.
    slots = {a.slot: a for a in axes}
    extras = [a for a in axes if a.slot.startswith("extra")]
    nested: list[Axis] = [*reversed(extras), *(slots[s] for s in ("z", "y", "x") if s in slots)]
    position = {a.slot: n for n, a in enumerate(nested)}
    hashes = dict(model_hashes or {})
    detected = dict(families or {})
    defaulted = defaulted_params(job)

    def model_changes(model: str) -> dict[str, object]:
        return family_changes(job, model, detected, defaulted)

    base = job.base.replace(model_hash=model_hash, **model_changes(job.base.model))
    # issue 11: LoRA. Several axes rewriting the prompt compose, in PROMPT_AXES order.
    prompt_axes = sorted((n for n, a in enumerate(nested) if a.param in PROMPT_AXES),
                         key=lambda n: PROMPT_AXES.index(nested[n].param))
    with_loras = _lora_setter(job, nested, lora_hashes)

    rows: list[RenderSpec] = []
    cells: list[Cell] = []
    for p_index, (prompt, negative) in enumerate(prompts):
        prompted = base.replace(prompt=prompt, negative_prompt=negative)
        changes = [[_changes(prompted, axis, v, prompt, hashes, model_changes) for v in axis.values]
                   for axis in nested]
        fields = [getattr(prompted, name) for name in SPEC_FIELDS]
        for coords in itertools.product(*(range(len(a.values)) for a in nested)):
            cell_fields = fields.copy()
            for axis_changes, i in zip(changes, coords):
                for at, value in axis_changes[i]:
                    cell_fields[at] = value
            x, y, z = (coords[position[s]] if s in position else None for s in ("x", "y", "z"))
            extra = tuple(coords[position[a.slot]] for a in extras)
            # Built directly and positionally: dataclasses.replace per cell was half of
            # planning's time. Normalized once the cell is whole (a strength axis may zero a
            # subseed); the seed does not enter normalization, so a row holds for every seed.
            if len(prompt_axes) > 1:
                cell_prompt = prompt
                for n in prompt_axes:
                    cell_prompt = rewrite_prompt(nested[n], nested[n].values[coords[n]],
                                                 cell_prompt)
                cell_fields[_PROMPT_AT] = cell_prompt
            row = RenderSpec(*cell_fields).normalized()
            rows.append(with_loras(row) if "<" in row.prompt else row)
            cells.append(Cell(p_index, 0, x, y, z, extra))
    check_families(job, rows)
    return Expansion(rows, cells, prompts, seeds)


_PROMPT_AT = SPEC_FIELDS.index("prompt")


def _lora_setter(job: JobFile, nested: list[Axis],
                 lora_hashes: LoraHashes | None) -> Callable[[RenderSpec], RenderSpec]:
    """Sets a row's LoRA fields from its prompt's tags, once per distinct prompt."""
    known: dict[str, LoraFields] = {}
    rewriting = [a for a in nested if a.param in PROMPT_AXES]
    key = rewriting[0].key if len(rewriting) == 1 else "prompt"

    def setter(row: RenderSpec) -> RenderSpec:
        fields = known.get(row.prompt)
        if fields is None:
            try:
                fields = known[row.prompt] = lora_fields(row.prompt, lora_hashes)
            except LoraError as exc:
                raise JobFileError(job.path, key, str(exc)) from None
        if not fields.loras:
            return row
        return row.replace(loras=fields.loras, lora_hashes=fields.lora_hashes)

    return setter


def _changes(spec: RenderSpec, axis: Axis, value: object, prompt: str,
             hashes: Mapping[str, str | None],
             model_changes: Callable[[str], dict[str, object]]) -> list[tuple[int, object]]:
    """The fields one axis value sets, as ``apply_axis_value`` sets them (a model brings its
    hash and its family's defaults): (position in ``SPEC_FIELDS``, value) pairs."""
    changed = apply_axis_value(spec, axis, value, prompt)
    if axis.param == "model":
        changed = changed.replace(model_hash=hashes.get(value), **model_changes(str(value)))
    return [(at, getattr(changed, name)) for at, name in enumerate(SPEC_FIELDS)
            if getattr(changed, name) != getattr(spec, name)]


def _prompt_pairs(job: JobFile, limit: int = MAX_PROMPTS) -> tuple[tuple[str, str], ...]:
    """The (prompt, negative prompt) pairs, in prompt-index order; see the module docstring."""
    mode = job.prompt_mode
    positives = _expansions(job, "prompt", limit)
    negatives = _expansions(job, "negative_prompt", limit)
    negative_axis = next((a for a in job.axes if a.param == "negative_prompt"), None)
    if negative_axis is not None and len(set(negatives)) > 1:
        raise JobFileError(job.path, "negative_prompt",
                           f"expands to {len(set(negatives))} negative prompts but "
                           f"{negative_axis.key} sets the negative prompt of every cell; "
                           "use one or the other")
    if mode == "combinatorial":
        if len(positives) * len(negatives) > limit:  # checked before building them
            raise JobFileError(job.path, "prompt",
                               f"{len(positives)} prompts x {len(negatives)} negative prompts "
                               f"make {len(positives) * len(negatives)} prompt pairs, more than "
                               f"{limit}; draw a number of random prompts instead")
        return tuple(itertools.product(positives, negatives))
    return tuple(zip(positives, negatives, strict=True))


def _expansions(job: JobFile, name: str, limit: int) -> list[str]:
    """What the ``prompt`` or ``negative_prompt`` template expands to."""
    template = getattr(job.base, name)
    if is_literal(template):
        return [template] if job.prompt_mode == "combinatorial" else [template] * job.prompt_mode
    from sdfarm.scheduler.prompts import (
        expand_prompts,  # dynamicprompts: templates only
    )

    return expand_prompts(template, mode=job.prompt_mode, seed=sub_seed(job.sweep_seed, name),
                          wildcard_dir=Path(job.wildcard_dir), limit=limit,
                          fail=lambda problem: JobFileError(job.path, name, problem))


def _check_cap(job: JobFile, seeds: int, prompts: int | None) -> None:
    """Refuse a plan above ``max_images``, with the count and where it comes from.

    ``prompts`` is ``None`` before the prompts are expanded: then the axes and seeds alone
    already make too many, and the count is a lower bound.
    """
    factors = [(prompts, "prompts")] if prompts is not None else []
    factors += [(len(a.values), f"{a.param} values") for a in job.axes]
    if seeds:
        factors.append((seeds, "seeds"))
    total = math.prod(n for n, _ in factors)
    if total <= job.max_images:
        return
    count = f"{total:,}" if prompts is not None else f"at least {total:,}"
    how = " x ".join(f"{n:,} {what}" for n, what in factors)
    way = ("raise max_images to render them all" if total <= MAX_IMAGES_LIMIT else
           f"a sweep may have at most {MAX_IMAGES_LIMIT:,}; split it into several job files")
    raise JobFileError(job.path, "max_images",
                       f"the job file describes {count} images ({how}), more than "
                       f"max_images = {job.max_images:,}; {way}")
