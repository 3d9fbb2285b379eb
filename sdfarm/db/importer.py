"""``sdfarm index FOLDER``: record images (PNG, JPEG, WebP) made elsewhere (or by sdfarm) as
done jobs, searchable like any other.

Each image becomes a done job of one "imported" sweep per run, with its path, sha256 and file
time (as the job's date). A file already recorded with the same path and sha256 is skipped, so
indexing a folder again only adds what is new. Unreadable files and malformed parameters are
reported and skipped; the run goes on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from sdfarm.db.gridmarks import GRID_PNG_KEY
from sdfarm.db.models import Job, JobStatus, Sweep, spec_columns
from sdfarm.db.textsearch import sync_fulltext
from sdfarm.errors import ImageMetadataError, SdfarmError
from sdfarm.metadata.generation import ImageGeneration, generation_from_chunks
from sdfarm.metadata.image import IMAGE_SUFFIXES, read_image_text

#: Images recorded per transaction: an interrupted run keeps what it recorded.
BATCH = 500
#: Files read and hashed at once (disk and hashing overlap; parsing is quick).
READERS = 4

Progress = Callable[[Path], None]
_OWN_GRID = "an sdfarm grid"


@dataclass
class IndexReport:
    folder: Path
    #: The imported sweep, or ``None`` when nothing new was found.
    sweep_id: int | None = None
    indexed: int = 0
    already_indexed: int = 0
    #: sdfarm's own grid images, skipped without a word (they hold no generation parameters).
    grids: int = 0
    #: (file, why it was skipped), in file order.
    problems: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Read:
    path: Path
    sha256: str | None = None
    generation: ImageGeneration | None = None
    mtime: datetime | None = None
    problem: str | None = None


def image_files(folder: Path) -> list[Path]:
    """Every PNG, JPEG and WebP file under ``folder`` (by name ending, any case), in a stable
    order."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def index_folder(factory: sessionmaker[Session], folder: Path, *,
                 progress: Progress | None = None) -> IndexReport:
    root = folder.expanduser().resolve()
    if not root.is_dir():
        raise SdfarmError(f"{folder}: not a folder (sdfarm index reads the images in a folder)")
    report = IndexReport(root)
    files = image_files(root)
    with factory() as session:
        known = _known_files(session, root)
    pending: list[dict[str, object]] = []
    seq = 0
    with ThreadPoolExecutor(READERS) as pool:
        for read in pool.map(lambda p: _read(p, known), files):
            if progress is not None:
                progress(read.path)
            if read.problem == "already indexed":
                report.already_indexed += 1
            elif read.problem == _OWN_GRID:
                report.grids += 1
            elif read.problem is not None:
                report.problems.append((read.path, read.problem))
            else:
                pending.append(_row(read, seq))
                seq += 1
                if len(pending) >= BATCH:
                    _record(factory, report, pending)
    if pending:
        _record(factory, report, pending)
    with factory.begin() as session:
        sync_fulltext(session)
    return report


def _known_files(session: Session, root: Path) -> set[tuple[str, str | None]]:
    # A range on the path (everything under root/) rather than LIKE, whose wildcards and
    # case rules differ between SQLite and PostgreSQL.
    prefix = str(root).rstrip(os.sep) + os.sep
    upper = prefix[:-1] + chr(ord(os.sep) + 1)
    rows = session.execute(select(Job.output_path, Job.sha256)
                           .where(Job.output_path >= prefix, Job.output_path < upper))
    return {(path, sha) for path, sha in rows}


def _read(path: Path, known: set[tuple[str, str | None]]) -> _Read:
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as exc:
        return _Read(path, problem=f"cannot be read: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if (str(path), sha) in known:
        return _Read(path, problem="already indexed")
    try:
        chunks = read_image_text(data)
        if GRID_PNG_KEY in chunks:
            return _Read(path, problem=_OWN_GRID)
        generation = generation_from_chunks(chunks)
    except ImageMetadataError as exc:
        return _Read(path, problem=str(exc))
    when = datetime.fromtimestamp(mtime, timezone.utc).replace(tzinfo=None)
    return _Read(path, sha, generation, when)


def _row(read: _Read, seq: int) -> dict[str, object]:
    gen = read.generation
    assert gen is not None
    spec = gen.spec
    return {
        "seq": seq, "key": spec.key, "status": JobStatus.done,
        **spec_columns(spec), "model_config": gen.model_config,
        # In no batch: an imported job is never rendered as part of this sweep.
        "batch_index": -1, "output_path": str(read.path), "sha256": read.sha256,
        "attempts": 0, "created_at": read.mtime, "finished_at": read.mtime,
        "extra_params": gen.extra or None,
    }


def _record(factory: sessionmaker[Session], report: IndexReport,
            rows: list[dict[str, object]]) -> None:
    with factory.begin() as session:
        if report.sweep_id is None:
            sweep = Sweep(name=f"index {report.folder.name}", kind="imported",
                          output_dir=str(report.folder), batch_size=1)
            session.add(sweep)
            session.flush()
            report.sweep_id = sweep.id
        for row in rows:
            row["sweep_id"] = report.sweep_id
        session.execute(insert(Job), rows)
    report.indexed += len(rows)
    rows.clear()
