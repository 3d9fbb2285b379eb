"""SQLAlchemy 2.0 models: a Sweep is one submitted job file, a Job is one image.

Every parameter that determines a job's pixels is a typed column, so history queries filter
on real columns and a job can be rendered again from its row alone.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sdfarm.params import FIRST_ADDED_KEY_RANK, PARAMS
from sdfarm.spec import SPEC_FIELDS, RenderSpec

_SPEC_VALUES = attrgetter(*SPEC_FIELDS)


def spec_columns(spec: RenderSpec) -> dict[str, object]:
    """A spec's parameters as the ``jobs`` columns that hold them (they share their names)."""
    return dict(zip(SPEC_FIELDS, _SPEC_VALUES(spec)))


def spec_columns_for(specs: Sequence[RenderSpec]) -> Callable[[RenderSpec], dict[str, object]]:
    """:func:`spec_columns` for a bulk insert of ``specs``: a parameter added after the first
    layout that every spec leaves at its default is left out, for the column's own default to
    fill (every bound value costs, and most sweeps set none of them)."""
    # A parameter outside the key (the VAE's path: its hash is the key's) counts as added.
    names = [name for name in SPEC_FIELDS
             if (name not in PARAMS and name not in _ADDED_TEXT_FIELDS)
             or (name in PARAMS
                 and (PARAMS[name].key_rank or FIRST_ADDED_KEY_RANK) < FIRST_ADDED_KEY_RANK)
             or any(getattr(s, name) != _default_of(name) for s in specs)]
    values = attrgetter(*names)
    return lambda spec: dict(zip(names, values(spec)))


#: Spec fields outside the parameter table added later, empty by default (issue 11: LoRA).
_ADDED_TEXT_FIELDS = frozenset({"loras", "lora_hashes"})


def _default_of(name: str) -> object:
    return "" if name in _ADDED_TEXT_FIELDS else PARAMS[name].default


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no time zone, so every timestamp is stored as UTC without one."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    canceled = "canceled"
    #: Its key is being rendered by a job of another farm sweep (``reused_from_job_id``): it
    #: takes that job's image when it is done, instead of rendering the same pixels twice.
    waiting = "waiting"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.done, JobStatus.failed, JobStatus.canceled)


class Base(DeclarativeBase):
    pass


_status_type = Enum(JobStatus, native_enum=False, length=16, validate_strings=True,
                    values_callable=lambda e: [m.value for m in e])


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="render")  # render | rerun | imported
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    job_file_path: Mapped[str | None] = mapped_column(String(1024))
    job_file_text: Mapped[str | None] = mapped_column(Text)
    output_dir: Mapped[str] = mapped_column(String(1024))
    sweep_seed: Mapped[int | None] = mapped_column(BigInteger)
    batch_size: Mapped[int] = mapped_column(Integer, default=4)
    #: The job file's explicit opt-in to pickle checkpoints, which the worker must honour.
    allow_pickle: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: Grid axes as planned ({"x": {"param": ..., "values": [...]}, ...}); None for plain sweeps.
    axes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: For a rerun sweep: the job it re-renders.
    rerun_of_job_id: Mapped[int | None] = mapped_column(Integer, index=True)
    #: Who renders it: "farm" (workers, through the broker) or "local" (one ``sdfarm render``
    #: process, the host and pid below). Only farm sweeps' jobs are ever sent to the broker.
    executor: Mapped[str] = mapped_column(String(16), default="farm", server_default="farm")
    executor_host: Mapped[str | None] = mapped_column(String(255))
    executor_pid: Mapped[int | None] = mapped_column(Integer)
    #: The newest ``finished_at`` of its jobs when its grid was last written (migration
    #: 0010_grid_written); the farm writes the grid again once a job finishes after it.
    grid_written_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: What planning warned about it, one warning a line (migration 0014): ``watch`` says it again.
    plan_warnings: Mapped[str] = mapped_column(Text, default="", server_default="")

    jobs: Mapped[list[Job]] = relationship(back_populates="sweep", order_by="Job.seq")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    #: Position in the sweep's render order.
    seq: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(32))
    status: Mapped[JobStatus] = mapped_column(_status_type, default=JobStatus.queued)

    # What determines the pixels.
    model: Mapped[str] = mapped_column(String(1024))
    model_hash: Mapped[str | None] = mapped_column(String(16))
    #: Diffusers folder with the config of a single-file checkpoint.
    model_config: Mapped[str | None] = mapped_column(String(1024))
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    seed: Mapped[int] = mapped_column(BigInteger)
    sampler: Mapped[str] = mapped_column(String(64))
    steps: Mapped[int] = mapped_column(Integer)
    cfg: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    clip_skip: Mapped[int] = mapped_column(Integer, default=1)
    # Parameters added after the first layout have server defaults only (no Python-side
    # ones): a bulk insert of a sweep that leaves them at their defaults then binds no value
    # for them at all (``spec_columns_for``), so a new parameter costs planning nothing.
    #: Variation seed, its strength and ENSD (migration 0007_noise); 0 for earlier jobs, which
    #: is what they were rendered with. BigInteger: imported images may hold any 64-bit value.
    subseed: Mapped[int] = mapped_column(BigInteger, server_default="0")
    subseed_strength: Mapped[float] = mapped_column(Float, server_default="0")
    ensd: Mapped[int] = mapped_column(BigInteger, server_default="0")
    #: A1111 schedule type (migration 0006_sampling); ``sampler`` holds the base sampler.
    schedule: Mapped[str] = mapped_column(String(32), server_default="Automatic")
    #: ``None``: the sampler's own eta.
    eta: Mapped[float | None] = mapped_column(Float)
    #: Model family and prediction type (migration 0008_families); earlier jobs were all SD 1.x
    #: models rendered as epsilon-prediction.
    family: Mapped[str] = mapped_column(String(16), server_default="sd1")
    prediction: Mapped[str] = mapped_column(String(8), server_default="epsilon")
    #: Flux's distilled guidance and a flow-matching shift; ``None``: the model's own.
    guidance: Mapped[float | None] = mapped_column(Float)
    shift: Mapped[float | None] = mapped_column(Float)
    # issue 11: LoRA (migration 0011_loras). From the prompt's <lora:...> tags: the canonical
    # set ("a:0.5,b:1", what ``history --lora`` searches) and A1111's "Lora hashes".
    loras: Mapped[str] = mapped_column(Text, server_default="")
    lora_hashes: Mapped[str] = mapped_column(Text, server_default="")
    # issue 11: VAE and embeddings (migration 0012_vae_embeddings); "" for earlier jobs, which
    # used the model's own VAE and no embeddings.
    #: The VAE file (absolute path; an imported image's file name), its A1111 hash, and the
    #: embeddings the prompts use as A1111's "TI hashes" ("name: hash, ...").
    vae: Mapped[str] = mapped_column(String(1024), server_default="")
    vae_hash: Mapped[str] = mapped_column(String(16), server_default="")
    ti_hashes: Mapped[str] = mapped_column(Text, server_default="")
    # issue 11: hires fix and img2img (migration 0013_hires_img2img); earlier jobs had neither.
    hires_denoise: Mapped[float] = mapped_column(Float, server_default="0.7")
    hires_scale: Mapped[float] = mapped_column(Float, server_default="0")
    hires_steps: Mapped[int] = mapped_column(Integer, server_default="0")
    hires_upscaler: Mapped[str] = mapped_column(String(32), server_default="Latent")
    #: Absolute path of the init image as planned, and the sha256 of its file then.
    init_image: Mapped[str] = mapped_column(String(1024), server_default="")
    init_image_hash: Mapped[str | None] = mapped_column(String(64))
    denoise: Mapped[float] = mapped_column(Float, server_default="0.75")

    # Where it sits: the planned batch, and grid coordinates when the sweep has axes.
    batch_index: Mapped[int] = mapped_column(Integer, default=0)
    grid_x: Mapped[int | None] = mapped_column(Integer)
    grid_y: Mapped[int | None] = mapped_column(Integer)
    grid_z: Mapped[int | None] = mapped_column(Integer)
    #: Index of the job's (prompt, negative prompt) expansion, and of its seed in the sweep's
    #: seed list; with the extra axes' indices (a list, extra1 first) these place every image of
    #: a sweep in its product (see ``sdfarm.scheduler.expand``).
    grid_prompt: Mapped[int | None] = mapped_column(Integer)
    grid_seed: Mapped[int | None] = mapped_column(Integer)
    grid_extra: Mapped[list[int] | None] = mapped_column(JSON(none_as_null=True))

    # How it was rendered: the forward pass it shared (a seed's low bits depend on its
    # neighbours in a pass, so an exact rerun rebuilds the same pass), threads and device.
    pass_id: Mapped[str | None] = mapped_column(String(36), index=True)
    pass_index: Mapped[int | None] = mapped_column(Integer)
    pass_size: Mapped[int | None] = mapped_column(Integer)
    threads: Mapped[int | None] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(200))

    # Outcome.
    output_path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str | None] = mapped_column(String(64))
    render_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: For a resumed cell: the earlier job whose image this one reuses.
    reused_from_job_id: Mapped[int | None] = mapped_column(Integer)
    #: For an image indexed from elsewhere (``sdfarm index``): the settings it was made with
    #: that have no column here (hires fix, LoRA hashes, ADetailer, ...), as written.
    extra_params: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))

    # Queue bookkeeping: who holds it and until when.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)

    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    sweep: Mapped[Sweep] = relationship(back_populates="jobs")

    __table_args__ = (
        Index("ix_jobs_sweep_status", "sweep_id", "status"),
        Index("ix_jobs_key_status", "key", "status"),
        Index("ix_jobs_reused_from", "reused_from_job_id"),
        Index("ix_jobs_status_lease", "status", "lease_until"),
        Index("ix_jobs_seed", "seed"),
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_claim_token", "claim_token"),
        # History filters (migration 0002_history; the full-text index lives there too).
        Index("ix_jobs_cfg_created", "cfg", "created_at"),
        Index("ix_jobs_steps_created", "steps", "created_at"),
        Index("ix_jobs_sampler_created", "sampler", "created_at"),
        Index("ix_jobs_schedule_created", "schedule", "created_at"),
        Index("ix_jobs_model_created", "model", "created_at"),
        Index("ix_jobs_model_hash_created", "model_hash", "created_at"),
        Index("ix_jobs_size_created", "width", "height", "created_at"),
        Index("ix_jobs_family_created", "family", "created_at"),
    )

    def spec(self) -> RenderSpec:
        """This row as a RenderSpec: every parameter is a column of the same name."""
        return RenderSpec(**{name: getattr(self, name) for name in SPEC_FIELDS})


class FarmWorker(Base):
    """One ``sdfarm worker`` process as it last reported itself: its heartbeat, what it is
    rendering and which model it holds. Shown by ``sdfarm status`` and ``sdfarm watch``."""

    __tablename__ = "workers"

    #: Celery node name, e.g. ``gpu0@render-box``: also what jobs record as their worker.
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    #: As recorded on jobs, e.g. ``cuda (NVIDIA RTX 4090)``; None until the first render.
    device: Mapped[str | None] = mapped_column(String(200))
    #: ``idle``, ``busy`` or ``stopped`` (a clean exit); a stale heartbeat means it died.
    state: Mapped[str] = mapped_column(String(16), default="idle")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    current_job_id: Mapped[int | None] = mapped_column(Integer)
    current_sweep_id: Mapped[int | None] = mapped_column(Integer, index=True)
    #: The model of the last pass: its pipeline stays loaded in the worker's cache.
    loaded_model: Mapped[str | None] = mapped_column(String(1024))
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
