"""Settings: built once at each entry point from the environment, then passed down.

No module reads the environment at import time; ``Settings.from_env()`` is called by the CLI
root group, the Celery app factory and the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Mapping

from sdfarm.errors import SdfarmError

Device = Literal["auto", "cpu", "cuda", "mps"] | str


def _default_model_dir(env: Mapping[str, str]) -> Path:
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sdfarm" / "models"


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    #: SQLAlchemy URL. Default: ``sdfarm.db`` in the current directory.
    database_url: str = field(default_factory=lambda: f"sqlite:///{Path.cwd() / 'sdfarm.db'}")
    #: Where sweep folders are written.
    output_dir: Path = field(default_factory=lambda: Path("outputs").resolve())
    #: Where built-in models are built and model hashes are cached.
    model_dir: Path = field(default_factory=lambda: _default_model_dir(os.environ))
    #: ``auto`` picks cuda when torch sees a GPU, else cpu.
    device: Device = "auto"
    #: ``auto`` means float16 on a GPU and float32 on the CPU.
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    #: torch CPU threads. Part of reproducibility: the thread count changes the low bits of a
    #: CPU render, so it is recorded on every job and ``rerun`` restores it.
    threads: int = field(default_factory=_cpu_count)
    #: Celery broker (the farm); unused by the embedded default.
    broker_url: str = "redis://localhost:6379/0"
    #: Seconds a claimed job stays reserved to its worker without a heartbeat; renewed during
    #: rendering, so only a dead or hung worker lets it expire.
    lease_seconds: float = 300.0
    #: How many pipelines a worker process keeps loaded (LRU by model).
    pipeline_cache_size: int = 1
    #: ``diffusers`` renders for real; ``fake:SECONDS`` writes a seed-determined image at a
    #: fixed cost and exists for the queue benchmarks and reliability tests only.
    renderer: str = "diffusers"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = cls()
        try:
            return replace(
                base,
                database_url=env.get("SDFARM_DATABASE_URL") or base.database_url,
                output_dir=Path(env["SDFARM_OUTPUT_DIR"]).resolve()
                if env.get("SDFARM_OUTPUT_DIR") else base.output_dir,
                model_dir=Path(env["SDFARM_MODEL_DIR"]).resolve()
                if env.get("SDFARM_MODEL_DIR") else _default_model_dir(env),
                device=env.get("SDFARM_DEVICE") or base.device,
                dtype=env.get("SDFARM_DTYPE") or base.dtype,  # type: ignore[arg-type]
                threads=int(env["SDFARM_THREADS"]) if env.get("SDFARM_THREADS") else base.threads,
                broker_url=env.get("SDFARM_BROKER_URL") or base.broker_url,
                lease_seconds=float(env.get("SDFARM_LEASE_SECONDS") or base.lease_seconds),
                pipeline_cache_size=int(env.get("SDFARM_PIPELINE_CACHE") or base.pipeline_cache_size),
                renderer=env.get("SDFARM_RENDERER") or base.renderer,
            )
        except ValueError as exc:
            raise SdfarmError(f"invalid sdfarm setting in the environment: {exc}") from None

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)
