"""Settings: built once at each entry point from the environment, then passed down.

No module reads the environment at import time; ``Settings.from_env()`` is called by the CLI
root group, the Celery app factory and the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from sdfarm.errors import SdfarmError

Device = Literal["auto", "cpu", "cuda", "mps"] | str


def _default_model_dir(env: Mapping[str, str]) -> Path:
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
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
    #: Seconds a forward pass may take to its first denoising step, model load included. Past
    #: them the lease is no longer renewed, so a device that hangs while loading gives its jobs
    #: back as a hung render does mid-pass; generous enough for a cold load of a big model.
    first_step_seconds: float = 600.0
    #: How many pipelines a worker process keeps loaded (LRU by model). With 1, the default,
    #: only one model is on the device at a time: the next model's load frees the last one.
    pipeline_cache_size: int = 1
    #: Keep each pipeline component on the CPU until it runs (diffusers' model CPU offload):
    #: SDXL or Flux on a card with little memory, at some cost in speed. GPU only.
    cpu_offload: bool = False
    #: ``diffusers`` renders for real; ``fake:SECONDS`` writes a seed-determined image at a
    #: fixed cost and exists for the queue benchmarks and reliability tests only.
    renderer: str = "diffusers"
    #: A job whose worker died (its lease expired) this many times is failed with the reason
    #: instead of being handed out again: one poison job must not take the farm down.
    max_attempts: int = 3
    #: Seconds before Redis hands an unacknowledged task to another worker. Far above any
    #: batch, so a healthy long batch is never delivered twice; a dead worker's jobs come back
    #: through their DB lease and ``recover`` instead (README, "The farm").
    visibility_timeout: float = 43200.0
    #: Seconds between a worker's recovery sweeps (expired leases, jobs the broker lost).
    recover_interval: float = 30.0
    #: Seconds between a worker's heartbeats in the ``workers`` table.
    heartbeat_seconds: float = 10.0
    #: Celery node name of ``sdfarm worker``; default ``gpu<N>@<host>`` with ``--gpu N``.
    worker_name: str | None = None
    #: Celery queue of the farm: farms sharing one Redis keep apart by using different ones.
    queue: str = "sdfarm"
    # issue 11: LoRA
    #: Where ``<lora:name:weight>`` names are looked up (``name.safetensors``, subfolders too);
    #: ``None``: ``loras/`` beside the model folder (:attr:`lora_folder`).
    lora_dir: Path | None = None

    @property
    def lora_folder(self) -> Path:
        return self.lora_dir if self.lora_dir is not None else self.model_dir.parent / "loras"
    # issue 11: embeddings.
    #: Textual inversion embeddings, found by file name (``SDFARM_EMBEDDING_DIR``); ``None``:
    #: ``embeddings/`` in the model dir (:attr:`embedding_folder`).
    embedding_dir: Path | None = None

    @property
    def embedding_folder(self) -> Path:
        if self.embedding_dir is not None:
            return self.embedding_dir
        return self.model_dir / "embeddings"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = cls()
        return replace(
            base,
            database_url=env.get("SDFARM_DATABASE_URL") or base.database_url,
            output_dir=Path(env["SDFARM_OUTPUT_DIR"]).resolve()
            if env.get("SDFARM_OUTPUT_DIR") else base.output_dir,
            model_dir=Path(env["SDFARM_MODEL_DIR"]).resolve()
            if env.get("SDFARM_MODEL_DIR") else _default_model_dir(env),
            device=env.get("SDFARM_DEVICE") or base.device,
            dtype=env.get("SDFARM_DTYPE") or base.dtype,  # type: ignore[arg-type]
            threads=_number(env, "SDFARM_THREADS", int, base.threads, minimum=1),
            broker_url=env.get("SDFARM_BROKER_URL") or base.broker_url,
            lease_seconds=_number(env, "SDFARM_LEASE_SECONDS", float, base.lease_seconds, minimum=0.1),
            first_step_seconds=_number(env, "SDFARM_FIRST_STEP_SECONDS", float,
                                       base.first_step_seconds, minimum=0.1),
            pipeline_cache_size=_number(env, "SDFARM_PIPELINE_CACHE", int, base.pipeline_cache_size,
                                        minimum=1),
            cpu_offload=_flag(env, "SDFARM_CPU_OFFLOAD", base.cpu_offload),
            renderer=env.get("SDFARM_RENDERER") or base.renderer,
            max_attempts=_number(env, "SDFARM_MAX_ATTEMPTS", int, base.max_attempts, minimum=1),
            visibility_timeout=_number(env, "SDFARM_VISIBILITY_TIMEOUT", float,
                                       base.visibility_timeout, minimum=1),
            recover_interval=_number(env, "SDFARM_RECOVER_INTERVAL", float, base.recover_interval,
                                     minimum=0.1),
            heartbeat_seconds=_number(env, "SDFARM_HEARTBEAT_SECONDS", float,
                                      base.heartbeat_seconds, minimum=0.1),
            worker_name=env.get("SDFARM_WORKER_NAME") or base.worker_name,
            queue=env.get("SDFARM_QUEUE") or base.queue,
            lora_dir=Path(env["SDFARM_LORA_DIR"]).expanduser().resolve()
            if env.get("SDFARM_LORA_DIR") else None,
            embedding_dir=Path(env["SDFARM_EMBEDDING_DIR"]).expanduser().resolve()
            if env.get("SDFARM_EMBEDDING_DIR") else None,
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    text = (env.get(key) or "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SdfarmError(f"{key}={env[key]}: must be 1 or 0 (true or false)")


def _number(env: Mapping[str, str], key: str, kind: type[int] | type[float], default: float,
            *, minimum: float) -> Any:
    text = env.get(key)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        what = "an integer" if kind is int else "a number"
        raise SdfarmError(f"{key}={text}: must be {what} >= {minimum:g}")
    return value
