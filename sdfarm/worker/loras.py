"""LoRAs in a loaded pipeline: loaded once per process, kept while used, weighted per pass.

A LoRA is loaded with ``load_lora_weights(adapter_name=...)`` the first time a pass uses it
and stays in its pipeline; each pass then only calls ``set_adapters`` with its own set and
weights (milliseconds), or disables every adapter when it has none (so a pass without LoRA
renders the base model's pixels exactly). Never ``fuse_lora``: unfusing leaves ~1e-6 of drift
in the weights, and a rerun must be bit-identical.

An adapter is named by the file's hash, not by the LoRA's name: peft adapter names cannot hold
dots, and a file changed on disk is then a different adapter, never the stale one.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from sdfarm.errors import ModelError
from sdfarm.scheduler.loras import LoraError, find_lora, lora_hash, parse_hashes, parse_set
from sdfarm.spec import RenderSpec

#: Most LoRAs kept loaded in one pipeline; the least recently used goes first beyond it.
MAX_LOADED = 8


@dataclass
class _Loaded:
    #: adapter name -> LoRA name (the last name it was used under), least recently used first.
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)
    #: The adapters and weights of the last pass (``None``: adapters disabled).
    active: tuple[tuple[str, float], ...] | None = None


class LoraSlots:
    """The LoRAs loaded in each pipeline of one renderer."""

    def __init__(self, folder: Path, cache_file: Path | None = None) -> None:
        self.folder = folder
        self.cache_file = cache_file
        #: How many times each LoRA (by name) was loaded: a grid over its weight loads it once.
        self.loads: Counter[str] = Counter()
        #: Seconds spent loading LoRAs (a pass leaves them out of its render time).
        self.load_seconds = 0.0
        self._by_pipe: dict[int, _Loaded] = {}
        #: LoRA name -> (file, its size and mtime, its hash): hashed again only when it changes.
        self._files: dict[str, tuple[Path, str, str]] = {}

    def forget(self, pipe: object) -> None:
        """Drop what is known of an evicted pipeline."""
        self._by_pipe.pop(id(pipe), None)

    def apply(self, pipe, spec: RenderSpec) -> float:
        """Set ``pipe``'s adapters to ``spec``'s LoRA set (every spec of a pass shares it);
        returns the seconds spent loading LoRAs (left out of the pass's render time)."""
        before = self.load_seconds
        state = self._by_pipe.setdefault(id(pipe), _Loaded())
        uses = [u for u in parse_set(spec.loras) if u.weight != 0]
        if not uses:
            # Weight 0 is no LoRA: disabled adapters give the base model's pixels exactly.
            if state.adapters and state.active is not None:
                pipe.disable_lora()
                state.active = None
            return 0.0
        expected = parse_hashes(spec.lora_hashes)
        weights: dict[str, float] = {}
        loaded = False
        for use in uses:
            adapter, new = self._adapter(pipe, state, use.name, expected.get(use.name))
            loaded |= new
            weights[adapter] = weights.get(adapter, 0.0) + use.weight
        active = tuple(weights.items())
        if loaded or active != state.active:
            # A load leaves peft's active adapters and enabled flags as it likes: set both.
            pipe.enable_lora()
            pipe.set_adapters(list(weights), list(weights.values()))
            state.active = active
        self._evict(pipe, state, keep=set(weights))
        return self.load_seconds - before

    def _adapter(self, pipe, state: _Loaded, name: str,
                 expected: str | None) -> tuple[str, bool]:
        """The adapter of LoRA ``name`` in ``pipe``, loaded if it is not; and whether it was."""
        path, digest = self._file(name)
        if expected and digest != expected:
            raise ModelError(f"LoRA {name!r} ({path}) has hash {digest}, but the job was "
                             f"planned with {expected}: the file changed; plan the job again "
                             "to render with this file")
        adapter = f"lora_{digest}"
        new = adapter not in state.adapters
        if new:
            started = time.perf_counter()
            try:
                _quietly(pipe.load_lora_weights, str(path), adapter_name=adapter)
            except (ValueError, KeyError, RuntimeError) as exc:
                _drop_partial(pipe, adapter)
                raise ModelError(f"LoRA {name!r} ({path}) does not load into this model (is it "
                                 "for another model family?): "
                                 f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
            self.load_seconds += time.perf_counter() - started
            self.loads[name] += 1
        state.adapters[adapter] = name
        state.adapters.move_to_end(adapter)
        return adapter, new

    def _file(self, name: str) -> tuple[Path, str]:
        try:
            path = find_lora(self.folder, name)
            stat = path.stat()
        except (LoraError, OSError) as exc:
            raise ModelError(str(exc)) from None
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        known = self._files.get(name)
        if known is None or known[:2] != (path, stamp):
            try:
                digest = lora_hash(path, self.cache_file)
            except LoraError as exc:
                raise ModelError(str(exc)) from None
            self._files[name] = known = (path, stamp, digest)
        return path, known[2]

    def _evict(self, pipe, state: _Loaded, keep: set[str]) -> None:
        # A pass using more LoRAs than that keeps them all.
        unused = [a for a in state.adapters if a not in keep]
        while len(state.adapters) > MAX_LOADED and unused:
            adapter = unused.pop(0)
            pipe.delete_adapters([adapter])
            del state.adapters[adapter]


def _drop_partial(pipe, adapter: str) -> None:
    """Remove what a failed load may have injected, so the pipeline stays the base model."""
    try:
        pipe.delete_adapters([adapter])
    except Exception:  # nothing was injected: nothing to remove
        pass


def _quietly(load, *args, **kwargs) -> None:
    """``load_lora_weights`` without transformers' per-load report of the text encoder's
    (expectedly) missing base weights, nor peft's warning that a second adapter is one more
    adapter (it is meant to be)."""
    import warnings

    from sdfarm.worker.builtin import quiet_libraries

    with quiet_libraries(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        load(*args, **kwargs)
