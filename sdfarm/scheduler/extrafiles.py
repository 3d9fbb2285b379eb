"""The files besides the model that an image is rendered with (issue 11): a VAE and textual
inversion embeddings. Their paths are resolved when the job file is read and their hashes are
taken when it is planned, so a missing or corrupt file is a plan-time error naming its key, and
what the file holds (its hash, not its path) enters each image's key. Pure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sdfarm.checkpoints import read_header
from sdfarm.errors import JobFileError, ModelError
from sdfarm.families import FAMILIES
from sdfarm.modelref import cached_sha256
from sdfarm.scheduler.embeddings import SHORT_HASH, EmbeddingFolder, format_ti_hashes
from sdfarm.scheduler.jobfile import JobFile
from sdfarm.scheduler.vaeref import family_problem, resolve_vae
from sdfarm.spec import RenderSpec

#: Hex digits of a VAE's hash, as A1111 writes it (as a model's).
VAE_HASH = 10
#: Families whose CLIP text encoders take textual inversion embeddings, and the tensors an
#: embedding file for them holds (``None``: exactly one, of any name).
EMBEDDING_TENSORS: dict[str, frozenset[str] | None] = {
    "sd1": None, "sd2": None, "sdxl": frozenset({"clip_l", "clip_g"})}


def resolve_vae_paths(job: JobFile) -> JobFile:
    """``job`` with its VAE and each ``vae`` axis value made absolute paths to checked files
    (labels stay as written); :class:`JobFileError` naming the key otherwise."""
    base = Path(job.path).parent

    def resolved(value: str, key: str) -> str:
        if not value:
            return value
        try:
            return str(resolve_vae(value, base))
        except ModelError as exc:
            raise JobFileError(job.path, key, str(exc)) from None

    axes = tuple(
        dataclasses.replace(a, values=tuple(resolved(v, a.key) for v in a.values))
        if a.param == "vae" else a for a in job.axes)
    return dataclasses.replace(job, base=job.base.replace(vae=resolved(job.base.vae, "vae")),
                               axes=axes)


class ExtraFiles:
    """Sets each planned image's ``vae_hash`` and ``ti_hashes`` from its files (a callable
    over specs, for ``make_plan``); each file is hashed once per plan."""

    def __init__(self, where: str, vae_keys: dict[str, str], model_dir: Path,
                 embedding_dir: Path) -> None:
        #: What errors name: the job file (or ``--set``), and the key of each VAE.
        self.where, self.vae_keys, self.model_dir = where, vae_keys, model_dir
        self.embeddings = EmbeddingFolder.scan(embedding_dir)
        self._hashes: dict[Path, str] = {}
        self._vae_checked: dict[tuple[str, str], str] = {}
        self._ti: dict[tuple[str, str, str], str] = {}

    @classmethod
    def for_job(cls, job: JobFile, model_dir: Path, embedding_dir: Path) -> ExtraFiles:
        vae_keys = {job.base.vae: "vae"}
        for axis in job.axes:
            if axis.param == "vae":
                vae_keys.update({v: axis.key for v in axis.values})
        return cls(job.path, vae_keys, model_dir, embedding_dir)

    def __call__(self, spec: RenderSpec) -> RenderSpec:
        vae_hash = self._vae_hash(spec.vae, spec.family) if spec.vae else ""
        ti_hashes = self._ti_hashes(spec.prompt, spec.negative_prompt, spec.family)
        if vae_hash == spec.vae_hash and ti_hashes == spec.ti_hashes:
            return spec
        return spec.replace(vae_hash=vae_hash, ti_hashes=ti_hashes)

    def _hash(self, path: Path, key: str) -> str:
        if path not in self._hashes:
            try:
                self._hashes[path] = cached_sha256(path, self.model_dir)
            except OSError as exc:
                raise JobFileError(self.where, key, f"cannot read {str(path)!r}: "
                                                       f"{exc.strerror or exc}") from None
        return self._hashes[path]

    def _vae_hash(self, vae: str, family: str) -> str:
        found = self._vae_checked.get((vae, family))
        if found is None:
            key = self.vae_keys.get(vae, "vae")
            problem = family_problem(Path(vae), vae, family)
            if problem is not None:
                raise JobFileError(self.where, key, problem)
            found = self._vae_checked[(vae, family)] = self._hash(Path(vae), key)[:VAE_HASH]
        return found

    def _ti_hashes(self, prompt: str, negative: str, family: str) -> str:
        if not self.embeddings.by_pieces:
            return ""
        found = self._ti.get((prompt, negative, family))
        if found is None:
            entries = []
            for key, text in (("prompt", prompt), ("negative_prompt", negative)):
                for name in self.embeddings.used_in(text):
                    entries.append(self._embedding(key, name, family))
            found = self._ti[(prompt, negative, family)] = format_ti_hashes(entries)
        return found

    def _embedding(self, key: str, name: tuple[str, ...], family: str) -> tuple[str, str]:
        try:
            file = self.embeddings.file(name)
        except ValueError as exc:
            raise JobFileError(self.where, key, str(exc)) from None
        if family not in EMBEDDING_TENSORS:
            raise JobFileError(self.where, key, (
                f"uses embedding {file.name!r}, but textual inversion embeddings apply to "
                f"SD 1.x, SD 2.x and SDXL models, not {FAMILIES[family].title}; take "
                f"{file.name!r} out of the prompt, or rename {str(file.path)!r}"))
        problem = _embedding_problem(file.path, family)
        if problem is not None:
            raise JobFileError(self.where, key, f"embedding {file.name!r} "
                                                   f"({str(file.path)!r}) {problem}")
        return file.name, self._hash(file.path, key)[:SHORT_HASH]


def _embedding_problem(path: Path, family: str) -> str | None:
    """Why the embedding file cannot be loaded into a ``family`` model, or ``None``."""
    try:
        shapes = read_header(path).shapes
    except ModelError as exc:
        return f"cannot be read: {exc}"
    wanted = EMBEDDING_TENSORS[family]
    title = FAMILIES[family].title
    if wanted is None:
        if "clip_g" in shapes:
            return f"is an SDXL embedding (clip_l and clip_g); the model is {title}"
        if len(shapes) != 1 or len(next(iter(shapes.values()))) not in (1, 2):
            return (f"holds {len(shapes)} tensors; an embedding for {title} holds one "
                    "(vectors x width)")
        return None
    if not wanted <= set(shapes):
        return (f"is not an embedding for {title}: it needs tensors {' and '.join(sorted(wanted))}"
                f", it holds {', '.join(sorted(shapes)) or 'none'}")
    return None
