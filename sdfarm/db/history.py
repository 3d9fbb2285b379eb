"""History queries: find past jobs by prompt words, seed, model, settings and date.

Every filter is a typed column with an index (migration 0002_history); prompt words go through
the full-text index (:mod:`sdfarm.db.textsearch`). Listings are newest first; a search with
prompt words is ranked by relevance, then newest first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath

from sqlalchemy import ColumnElement, and_, delete, false, func, or_, select, text
from sqlalchemy.orm import Session

from sdfarm.db import textsearch
from sdfarm.db.fulltext import TextQuery, parse_text_query
from sdfarm.db.models import Job, JobStatus
from sdfarm.db.textsearch import (
    Hit,
    match_condition,
    older_matches,
    prepare_search,
    ranked_window,
)
from sdfarm.errors import SamplerError
from sdfarm.metadata.a1111 import model_display_name
from sdfarm.samplers import canonical_schedule, split_sampler

#: CFG values are stored as floats: a value matches within this distance.
CFG_TOLERANCE = 1e-6
#: Rows per query when scanning or deleting many jobs.
CHUNK = 1000
_HASH_PREFIX = re.compile(r"^[0-9a-f]{4,}$")


@dataclass(frozen=True)
class HistoryQuery:
    """What ``sdfarm history`` filters on; every filter is optional and they combine (AND)."""

    #: Search syntax of :mod:`sdfarm.db.fulltext`, over the prompt / the negative prompt.
    prompt: str | None = None
    negative: str | None = None
    seed: int | None = None
    #: A model name (file name with or without extension, folder name, reference) or a hash
    #: (prefix of at least 4 hex digits).
    model: str | None = None
    #: A base name (every schedule) or a combined one ("DPM++ 2M Karras": that schedule).
    sampler: str | None = None
    #: A1111 schedule type.
    schedule: str | None = None
    #: Inclusive ranges.
    cfg: tuple[float, float] | None = None
    steps: tuple[int, int] | None = None
    #: (width, height).
    size: tuple[int, int] | None = None
    #: Model family (``sdfarm.families``).
    family: str | None = None
    # issue 11: LoRA
    #: A LoRA name: jobs whose LoRA set holds it (at any weight), case-insensitive.
    lora: str | None = None
    sweep_id: int | None = None
    statuses: tuple[JobStatus, ...] = ()
    #: Naive UTC, as stored: ``since`` inclusive, ``until`` exclusive.
    since: datetime | None = None
    until: datetime | None = None
    _texts: dict[str, TextQuery] = field(default_factory=dict, init=False, repr=False,
                                         compare=False)

    def __post_init__(self) -> None:
        # Parsed once, up front: a query without words fails before any SQL runs.
        if self.prompt is not None:
            self._texts["prompt"] = parse_text_query(self.prompt, "--prompt")
        if self.negative is not None:
            self._texts["negative"] = parse_text_query(self.negative, "--negative")

    @property
    def text_queries(self) -> dict[str, TextQuery]:
        return dict(self._texts)

    @property
    def ranked(self) -> bool:
        """Whether there are words to rank by (exclusions alone have no relevance)."""
        return any(q.include for q in self._texts.values())


def search_jobs(session: Session, query: HistoryQuery, *, limit: int | None = 20,
                offset: int = 0) -> list[Job]:
    """The matching jobs: ranked by relevance then newest first when there are prompt words,
    otherwise newest first. ``limit=None`` returns every match."""
    ids = search_ids(session, query, limit=limit, offset=offset)
    found = {j.id: j for j in _load(session, ids)}
    return [found[i] for i in ids if i in found]


def search_ids(session: Session, query: HistoryQuery, *, limit: int | None = 20,
               offset: int = 0) -> list[int]:
    prepare_search(session)
    conditions = _conditions(session, query)
    if not query.ranked:
        stmt = (select(Job.id).where(*conditions(lambda c: c), *_text_condition(session, query))
                .order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset))
        return list(session.scalars(stmt))
    size = textsearch.RANK_WINDOW
    window = ranked_window(session, query.text_queries, conditions, size)
    return _page(window, size, limit, offset, lambda before, n, k: older_matches(
        session, query.text_queries, conditions, before, n, k))


def _page(window: list[Hit], size: int, limit: int | None, offset: int,
          older: Callable[[int, int | None, int], list[int]]) -> list[int]:
    """One page of: the window by relevance, then newest first (ids grow in recording order),
    then, when the window was full, the older matches newest first."""
    ranked = sorted(window, key=lambda h: (-h.score, -h.id))
    stop = None if limit is None else offset + limit
    ids = [h.id for h in ranked[offset:stop]]
    if len(window) < size or (stop is not None and stop <= len(window)):
        return ids
    oldest_in_window = window[-1].id
    more = None if stop is None else stop - max(offset, len(window))
    return ids + older(oldest_in_window, more, max(0, offset - len(window)))


def _text_condition(session: Session, query: HistoryQuery) -> list[ColumnElement]:
    if not query.text_queries:
        return []
    return [match_condition(session.get_bind().dialect.name, query.text_queries)]


def _conditions(session: Session, q: HistoryQuery):
    """The non-text filters, as a function of a column wrapper (see textsearch.no_index)."""
    models = match_models(session, q.model) if q.model is not None else None
    # A combined sampler name ("DPM++ 2M Karras") is a sampler and a schedule; with --schedule
    # too, both schedules must hold.
    sampler, named = _sampler_name(q.sampler) if q.sampler is not None else (None, None)
    schedules = {s for s in (named, q.schedule and _schedule_name(q.schedule)) if s is not None}

    def build(c: Callable[[ColumnElement], ColumnElement]) -> list[ColumnElement]:
        # One condition per filter (a filter on two columns is one and_): the full-text search
        # on SQLite probes them one by one.
        out: list[ColumnElement] = []
        if q.seed is not None:
            out.append(c(Job.seed) == q.seed)
        if q.sweep_id is not None:
            out.append(c(Job.sweep_id) == q.sweep_id)
        if q.statuses:
            out.append(c(Job.status).in_(list(q.statuses)))
        if q.cfg is not None:
            # One value is an equality, so the (cfg, created_at) index lists it newest first;
            # a range gets a tolerance for decimals like 6.1 that floats cannot hold exactly.
            low, high = q.cfg
            out.append(c(Job.cfg) == low if low == high else
                       c(Job.cfg).between(low - CFG_TOLERANCE, high + CFG_TOLERANCE))
        if q.steps is not None:
            low, high = q.steps
            out.append(c(Job.steps) == low if low == high else c(Job.steps).between(low, high))
        if q.size is not None:
            out.append(and_(c(Job.width) == q.size[0], c(Job.height) == q.size[1]))
        if sampler is not None:
            out.append(c(Job.sampler) == sampler)
        if q.family is not None:
            out.append(c(Job.family) == q.family)
        if q.lora is not None:
            out.append(lora_condition(c(Job.loras), q.lora))
        if len(schedules) > 1:
            out.append(false())
        elif schedules:
            out.append(c(Job.schedule) == next(iter(schedules)))
        if models is not None:
            names, hashes = models
            either = [c(Job.model).in_(names)] if names else []
            either += [c(Job.model_hash).in_(hashes)] if hashes else []
            out.append(or_(*either) if either else false())
        if q.since is not None or q.until is not None:
            dates = [c(Job.created_at) >= q.since] if q.since is not None else []
            dates += [c(Job.created_at) < q.until] if q.until is not None else []
            out.append(and_(*dates))
        return out

    return build


def lora_condition(loras: ColumnElement, name: str) -> ColumnElement:
    """issue 11: LoRA. The canonical set ("a:0.5,b:1") names ``name``: ``,a:`` in ``,`` + set."""
    escaped = name.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower("," + loras).like(f"%,{escaped}:%", escape="\\")


def _sampler_name(name: str) -> tuple[str, str | None]:
    """(sampler, schedule or None) of a filter: a combined name means both."""
    try:
        return split_sampler(name)
    except SamplerError:  # imported images keep names sdfarm does not know
        return " ".join(name.split()), None


def _schedule_name(name: str) -> str:
    try:
        return canonical_schedule(name)
    except SamplerError:
        return " ".join(name.split())


def distinct_values(session: Session, column: str) -> list[str]:
    """Every distinct value of ``model``, ``model_hash``, ``sampler`` or ``schedule``, one index
    seek per value (a loose index scan): there are a handful of them and a million jobs."""
    if column not in ("model", "model_hash", "sampler", "schedule"):
        raise ValueError(column)
    sql = text(f"""
        WITH RECURSIVE v(x) AS (
            SELECT min({column}) FROM jobs
            UNION ALL
            SELECT (SELECT min({column}) FROM jobs WHERE {column} > v.x) FROM v
            WHERE v.x IS NOT NULL)
        SELECT x FROM v WHERE x IS NOT NULL""")
    return list(session.scalars(sql))


def match_models(session: Session, name: str) -> tuple[list[str], list[str]]:
    """(model references, model hashes) that ``name`` designates."""
    wanted = name.strip().casefold()
    # An imported image records its model as A1111 writes it, without the extension: a
    # file name given with it designates that model too.
    forms = {wanted, model_display_name(wanted)}
    models = [m for m in distinct_values(session, "model")
              if forms & {m.casefold(), model_display_name(m).casefold(),
                          PurePath(m).name.casefold(), m.rpartition(":")[2].casefold()}]
    hashes = []
    if _HASH_PREFIX.match(wanted):
        hashes = [h for h in distinct_values(session, "model_hash") if h.casefold().startswith(wanted)]
    return models, hashes


def missing_jobs(session: Session, query: HistoryQuery, *, limit: int | None = None,
                 offset: int = 0) -> list[Job]:
    """Done jobs matching ``query`` whose image file is gone, newest first."""
    done = HistoryQuery(**{**_fields(query), "statuses": (JobStatus.done,)})
    prepare_search(session)
    conditions = _conditions(session, done)
    stmt = (select(Job.id, Job.output_path)
            .where(*conditions(lambda c: c), *_text_condition(session, done))
            .order_by(Job.created_at.desc(), Job.id.desc()))
    gone: list[int] = []
    for job_id, path in session.execute(stmt.execution_options(yield_per=CHUNK)):
        if not os.path.isfile(path):
            gone.append(job_id)
            if limit is not None and len(gone) >= offset + limit:
                break
    ids = gone[offset:]
    found = {j.id: j for j in _load(session, ids)}
    return [found[i] for i in ids]


def delete_jobs(session: Session, ids: Sequence[int]) -> int:
    """Delete these job rows (their sweeps stay); returns how many went."""
    deleted = 0
    for start in range(0, len(ids), CHUNK):
        result = session.execute(delete(Job).where(Job.id.in_(list(ids[start:start + CHUNK])))
                                 .execution_options(synchronize_session=False))
        deleted += result.rowcount
    return deleted


def _fields(query: HistoryQuery) -> dict[str, object]:
    return {name: getattr(query, name) for name in HistoryQuery.__dataclass_fields__
            if not name.startswith("_")}


def _load(session: Session, ids: Sequence[int]) -> Iterator[Job]:
    for start in range(0, len(ids), CHUNK):
        yield from session.scalars(select(Job).where(Job.id.in_(list(ids[start:start + CHUNK]))))


def job_fields(job: Job) -> dict[str, object]:
    """Every recorded column of ``job``, JSON-ready."""
    out: dict[str, object] = {}
    for column in Job.__table__.columns:
        value = getattr(job, column.key)
        if hasattr(value, "isoformat"):
            value = value.isoformat(sep=" ", timespec="seconds")
        elif hasattr(value, "value"):
            value = value.value
        out[column.key] = value
    return out
