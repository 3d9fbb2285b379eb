"""``sdfarm rerun``: render a recorded job again, exactly (rebuilding the forward pass it
shared, with its thread count) or with some parameters changed, into a new sweep linked to it.

An imported image may record settings sdfarm has no column for (a hires pass, a LoRA): the
rerun renders without them, says which, and notes them on the new job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import get_job, pass_jobs, rendered_origin
from sdfarm.db.models import JobStatus
from sdfarm.db.sweeps import Executor, sweep_jobs
from sdfarm.errors import (
    FamilyUnknown,
    JobFileError,
    JobNotFound,
    ModelError,
    SamplerError,
    SdfarmError,
)
from sdfarm.families import FAMILIES, family_problem
from sdfarm.metadata.generation import UNKNOWN_SAMPLER
from sdfarm.metadata.unapplied import NOT_APPLIED, unapplied_settings
from sdfarm.modelref import model_hash, parse_model_ref
from sdfarm.params import check_combination
from sdfarm.samplers import SAMPLERS, SCHEDULES
from sdfarm.scheduler.extrafiles import ExtraFiles
from sdfarm.scheduler.loras import (
    LoraError,
    LoraFolder,
    lora_fields,
    parse_hashes,
    parse_set,
)
from sdfarm.scheduler.overrides import WHERE, apply_overrides
from sdfarm.scheduler.prepare import detect_family
from sdfarm.scheduler.rerun import rerun_plan
from sdfarm.scheduler.vaeref import resolve_vae
from sdfarm.spec import RenderSpec
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record


@dataclass(frozen=True)
class Rerun:
    job_id: int
    #: The new job and its image.
    new_job_id: int
    output_path: str
    #: Images of the pass rendered again (more than 1: the original shared a forward pass).
    pass_size: int
    #: For each changed parameter: (new value, original value).
    changed: dict[str, tuple[object, object]]
    #: Largest per-channel pixel difference to the original (0: identical); ``None`` with
    #: changes, or when the original image is gone.
    difference: int | None
    original_path: str
    original_device: str | None
    device: str | None
    #: The original's recorded settings this rerun could not apply, by their names there.
    not_applied: list[str] = field(default_factory=list)


def rerun_job(settings: Settings, job_id: int, changes: dict[str, object],
              *, on_plan: Callable[[int], None] | None = None,
              on_not_applied: Callable[[list[str]], None] | None = None) -> Rerun:
    """Render ``job_id`` again, with ``changes`` (parameter -> value, as ``--set`` gives them).

    ``on_plan(pass_size)`` is called once the pass to render is known, before rendering, and
    ``on_not_applied(names)`` then when the original records settings the rerun leaves out.
    """
    factory = session_factory(settings.database_url)
    with factory() as session:
        job = get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} in {settings.database_url}")
        # A resumed cell reused an earlier render: its pixels come from that job's pass.
        rendered = rendered_origin(session, job)
        companions = [rendered] if changes else pass_jobs(session, rendered)
        specs = [j.spec() for j in companions]
        model_config = job.model_config
        if changes:
            specs = [apply_overrides(job.spec(), changes)]
            if "model" in changes:
                specs, model_config = _with_new_model(specs[0], settings)
            specs = [_with_extra_files(specs[0], changes, settings)]
        _check_vae(job_id, specs[0])
        _check_sampling(job_id, specs[0])
        _check_model(job_id, specs[0].model, model_config, job.sweep.allow_pickle, settings)
        if job.sweep.kind == "imported" and "model" not in changes:
            # An A1111 image does not say its model's family: the model's files do.
            specs = [_as_detected(s, model_config, job.sweep.allow_pickle, settings)
                     for s in specs]
        _check_family(job_id, specs[0])
        specs = [_with_loras(job_id, s, settings, "prompt" in changes) for s in specs]
        specs = _with_init_image(job_id, specs, "init_image" in changes)  # issue 11: img2img
        position = [j.id for j in companions].index(rendered.id)
        threads = rendered.threads or settings.threads
        plan = rerun_plan(job_id, specs, model_config=model_config,
                          allow_pickle=job.sweep.allow_pickle)
        before = {k: getattr(job, k) for k in changes}
        not_applied = unapplied_settings(job.extra_params)
        original = job
    if on_plan is not None:
        on_plan(len(specs))
    if not_applied and on_not_applied is not None:
        on_not_applied(not_applied)
    # The thread count changes the low bits of a CPU render: use the original one.
    run_settings = settings.with_(threads=threads)
    sweep_id = record(run_settings, plan, kind="rerun", rerun_of_job_id=job_id,
                      executor=Executor.this_process())
    if not_applied:
        with factory.begin() as session:
            sweep_jobs(session, sweep_id)[position].extra_params = {
                NOT_APPLIED: ", ".join(not_applied)}
    render_sweep_locally(run_settings, sweep_id, exact_pass=True)
    with factory() as session:
        new_job = sweep_jobs(session, sweep_id)[position]
    if new_job.status != JobStatus.done:
        first = (new_job.error or "").splitlines()[0] if new_job.error else ""
        raise SdfarmError(f"rerun of job {job_id} (job {new_job.id}) ended "
                          f"{new_job.status.value}: {first}")
    difference = None
    if not changes and Path(original.output_path).is_file():
        from sdfarm.worker.output import max_pixel_difference

        difference = max_pixel_difference(Path(original.output_path), Path(new_job.output_path))
    return Rerun(job_id, new_job.id, new_job.output_path, len(specs),
                 {k: (getattr(new_job, k), before[k]) for k in changes}, difference,
                 original.output_path, original.device, new_job.device, not_applied)


def _with_new_model(spec: RenderSpec, settings: Settings) -> tuple[list[RenderSpec], str | None]:
    """The spec with the new model's absolute reference and hash, and its config folder."""
    mref = parse_model_ref(spec.model, settings.model_dir)
    model = str(mref.path) if mref.kind in ("file", "folder") else spec.model
    if mref.kind == "builtin":
        from sdfarm.worker.builtin import ensure_builtin

        ensure_builtin(spec.model.removeprefix("builtin:"), settings.model_dir)
    new = spec.replace(model=model, model_hash=model_hash(mref, settings.model_dir))
    config = str(mref.config) if mref.config else None
    # The new model may be of another family: it renders as its own.
    return [_as_detected(new, config, False, settings)], config


def _with_extra_files(spec: RenderSpec, changes: dict[str, object],
                      settings: Settings) -> RenderSpec:
    """``spec`` with a changed VAE made an absolute, checked path, and the VAE and embedding
    hashes of what it now uses (issue 11): a new prompt may use other embeddings."""
    if not {"vae", "prompt", "negative_prompt", "model"} & set(changes):
        return spec
    if "vae" in changes and spec.vae:
        try:
            spec = spec.replace(vae=str(resolve_vae(spec.vae, Path.cwd())))
        except ModelError as exc:
            raise JobFileError(WHERE, "vae", str(exc)) from None
    return ExtraFiles(WHERE, {spec.vae: "vae"}, settings.model_dir,
                      settings.embedding_folder)(spec)


def _check_vae(job_id: int, spec: RenderSpec) -> None:
    """Fail before recording anything when the VAE is not a file here (an imported image
    names its VAE by file name only)."""
    if (spec.vae and not (Path(spec.vae).is_absolute() and Path(spec.vae).is_file())
            or spec.vae_hash and not spec.vae):
        what = repr(spec.vae) if spec.vae else f"hash {spec.vae_hash}"
        raise ModelError(f"job {job_id} was made with VAE {what}, which is not a file on "
                         "this machine; point it at the file with --set vae=PATH, or render "
                         "with the model's own VAE: --set vae=")


def _as_detected(spec: RenderSpec, model_config: str | None, allow_pickle: bool,
                 settings: Settings) -> RenderSpec:
    """``spec`` with its model's family and prediction as its files say; as it was when they
    cannot say (a pickle checkpoint)."""
    mref = parse_model_ref(spec.model, settings.model_dir, model_config=model_config,
                           allow_pickle=allow_pickle)
    try:
        found = detect_family(mref)
    except FamilyUnknown:
        return spec
    return spec.replace(family=found.family, prediction=found.prediction)


def _with_loras(job_id: int, spec: RenderSpec, settings: Settings, new_prompt: bool) -> RenderSpec:
    """issue 11: LoRA. Fail before recording anything when a LoRA of the job is not in the
    LoRA folder here; a changed prompt brings its own LoRA set and hashes."""
    folder = LoraFolder(settings.lora_folder, settings.model_dir / "hashes.json")
    try:
        if new_prompt:
            fields = lora_fields(spec.prompt, folder.hash_of)
            return spec.replace(loras=fields.loras, lora_hashes=fields.lora_hashes)
        recorded = parse_hashes(spec.lora_hashes)
        for use in parse_set(spec.loras):
            here = folder.hash_of(use.name)
            if recorded.get(use.name, here) != here:
                raise LoraError(f"LoRA {use.name!r} was {recorded[use.name]} when it rendered; "
                                f"the file in {settings.lora_folder} is {here}: put the "
                                "original back, or rerun with --set prompt=... to use this one")
    except LoraError as exc:
        raise LoraError(f"job {job_id}: {exc}") from None
    return spec


def _check_sampling(job_id: int, spec: RenderSpec) -> None:
    """Fail before recording anything when the sampler or schedule (as an imported image
    names them, or as changed) is one sdfarm cannot render."""
    if spec.sampler == UNKNOWN_SAMPLER:
        raise SamplerError(
            f"job {job_id} does not say which sampler made it (its image did not record one); "
            f"choose one with --set sampler=NAME: {', '.join(SAMPLERS)}")
    if spec.sampler not in SAMPLERS:
        raise SamplerError(
            f"job {job_id} was made with sampler {spec.sampler!r}, which sdfarm cannot render; "
            f"choose one with --set sampler=NAME: {', '.join(SAMPLERS)}")
    if spec.schedule not in SCHEDULES:
        raise SamplerError(
            f"job {job_id} was made with schedule {spec.schedule!r}, which sdfarm cannot "
            f"render; choose one with --set schedule=NAME: {', '.join(SCHEDULES)}")
    problem = check_combination(spec.sampler, spec.schedule, spec.eta)
    if problem is not None:  # an imported image: A1111 writes "Eta" for Euler a, for instance
        param, _, text = problem.partition(": ")
        how = "--set eta=none" if param == "eta" else f"--set {param}=NAME"
        raise SamplerError(f"job {job_id}: {text}; rerun it with {how}")


def _with_init_image(job_id: int, specs: list[RenderSpec], changed: bool) -> list[RenderSpec]:
    """Fail before recording anything when an img2img job's init image is gone or no longer
    the one it was rendered from; a new one (``--set init_image=PATH``) is hashed here."""
    import hashlib

    out = []
    for spec in specs:
        if not spec.init_image:
            out.append(spec)
            continue
        path = Path(spec.init_image).expanduser().resolve()
        try:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise SdfarmError(f"job {job_id}: init image {path} cannot be read: "
                              f"{exc.strerror or exc}; put it back, or rerun with --set "
                              f"init_image=PATH") from None
        if changed:
            spec = spec.replace(init_image=str(path), init_image_hash=sha)
        elif spec.init_image_hash and sha != spec.init_image_hash:
            raise SdfarmError(f"job {job_id}: init image {path} changed since it was planned "
                              f"(sha256 {spec.init_image_hash[:12]}... then); put the original "
                              f"back, or rerun with --set init_image=PATH for the new one")
        out.append(spec)
    return out


def _check_family(job_id: int, spec: RenderSpec) -> None:
    """Fail before recording anything when the model's family cannot render the parameters
    (a new model of another family, or a changed sampler it does not take)."""
    problem = family_problem(spec.family, spec.prediction, spec.as_dict())
    if problem is not None:
        param, _, text = problem.partition(": ")
        raise SdfarmError(f"job {job_id}: {text} (the model is {FAMILIES[spec.family].title}); "
                          f"rerun it with --set {param}=VALUE")


def _check_model(job_id: int, model: str, model_config: str | None, allow_pickle: bool,
                 settings: Settings) -> None:
    """Fail before recording anything when the model cannot be found here (an imported
    image names its model by file name only)."""
    try:
        parse_model_ref(model, settings.model_dir, model_config=model_config,
                        allow_pickle=allow_pickle)
    except ModelError as exc:
        raise ModelError(f"job {job_id}: {exc}; point it at the weights with --set model=PATH") from None
