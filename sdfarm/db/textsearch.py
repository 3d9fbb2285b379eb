"""Full-text search in SQL: SQLite FTS5 and PostgreSQL tsvector, behind one interface.

Relevance needs a score for every match, and a common word matches a third of a million-job
history; so a search ranks the newest :data:`RANK_WINDOW` matches by relevance (bm25 on SQLite,
ts_rank on PostgreSQL) and lists any older matches after them, newest first. Both scans walk
the full-text index newest first and stop after the window, so the cost is bounded by the
window, not by how common the word is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (ColumnElement, Integer, String, bindparam, column, func, literal_column,
                        select, table, text)
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from sdfarm.db.fulltext import TextQuery, fts5_match, pg_tsquery
from sdfarm.db.models import Job

#: Matches ranked by relevance per search; older matches follow by date.
RANK_WINDOW = 5000
#: When the other filters select at most this many jobs, SQLite's full-text scan is limited to
#: those ids instead of checking each match against the jobs table.
NARROW_LIMIT = 5000

_fts = table("jobs_fts", column("rowid", Integer))
_FTS_TABLE = literal_column("jobs_fts")
_TSV = literal_column("jobs.search_tsv")
_unary_plus = operators.custom_op("+")

#: Builds the filter conditions; given a column wrapper so SQLite can be kept off their indexes.
Conditions = Callable[[Callable[[ColumnElement], ColumnElement]], list[ColumnElement]]


@dataclass(frozen=True)
class Hit:
    id: int
    created_at: datetime
    #: Higher is more relevant.
    score: float


def sync_fulltext(session: Session) -> int:
    """Add the jobs recorded since the last search to SQLite's full-text index, in one
    statement (see migration 0002_history); returns how many. Part of the caller's
    transaction: a search sees every job either way, and a committed one leaves less to do
    for the next."""
    if session.get_bind().dialect.name != "sqlite":
        return 0  # PostgreSQL's tsvector is a generated column: always current
    mark = session.execute(text("SELECT indexed_up_to FROM jobs_fts_state")).scalar_one()
    top = session.execute(text("SELECT coalesce(max(id), 0) FROM jobs")).scalar_one()
    if top <= mark:
        return 0
    added = session.execute(text(
        "INSERT INTO jobs_fts(rowid, prompt, negative_prompt) "
        "SELECT id, prompt, negative_prompt FROM jobs WHERE id > :mark"), {"mark": mark}).rowcount
    session.execute(text("UPDATE jobs_fts_state SET indexed_up_to = :top"), {"top": top})
    return added


def no_index(col: ColumnElement) -> ColumnElement:
    """``+col`` for SQLite: the same value, but the planner cannot drive the query from the
    column's index (and so cannot probe the full-text index once per row, which costs a full
    doclist read each time)."""
    return UnaryExpression(col, operator=_unary_plus, type_=col.type)


def same(col: ColumnElement) -> ColumnElement:
    return col


def match_condition(dialect: str, queries: Mapping[str, TextQuery]) -> ColumnElement:
    """A WHERE condition for "matches the text queries", unranked (listings, housekeeping)."""
    if dialect == "postgresql":
        return _TSV.op("@@")(_tsquery(queries))
    include, exclude = fts5_match(queries)
    if include is None:
        return Job.id.not_in(select(_fts.c.rowid).where(_fts_match(exclude)))
    return Job.id.in_(select(_fts.c.rowid).where(_fts_match(include)))


def ranked_window(session: Session, queries: Mapping[str, TextQuery], conditions: Conditions,
                  window: int) -> list[Hit]:
    """The newest ``window`` jobs that match and pass ``conditions``, with relevance scores,
    newest first. ``queries`` must include at least one word (not only exclusions)."""
    if session.get_bind().dialect.name == "postgresql":
        tsq = _tsquery(queries)
        stmt = (select(Job.id, Job.created_at, func.ts_rank(_TSV, tsq, 1))
                .where(_TSV.op("@@")(tsq), *conditions(same))
                .order_by(Job.id.desc()).limit(window))
        return [Hit(i, c, float(s)) for i, c, s in session.execute(stmt)]
    include, _ = fts5_match(queries)
    narrowed = _narrow(session, conditions)
    if narrowed == []:
        return []
    stmt = (select(Job.id, Job.created_at, func.bm25(_FTS_TABLE))
            .select_from(_fts.join(Job, Job.id == _fts.c.rowid))
            .where(_fts_match(include), *_within(narrowed), *conditions(no_index))
            .order_by(_fts.c.rowid.desc()).limit(window))
    # bm25 is lower for better matches.
    return [Hit(i, c, -float(s)) for i, c, s in session.execute(stmt)]


def older_matches(session: Session, queries: Mapping[str, TextQuery], conditions: Conditions,
                  before_id: int, limit: int | None, offset: int) -> list[int]:
    """Ids of matching jobs older than the window (id below ``before_id``), newest first."""
    if session.get_bind().dialect.name == "postgresql":
        stmt = (select(Job.id).where(_TSV.op("@@")(_tsquery(queries)), Job.id < before_id,
                                     *conditions(same)).order_by(Job.id.desc()))
    else:
        include, _ = fts5_match(queries)
        narrowed = _narrow(session, conditions)
        stmt = (select(Job.id).select_from(_fts.join(Job, Job.id == _fts.c.rowid))
                .where(_fts_match(include), _fts.c.rowid < before_id, *_within(narrowed or None),
                       *conditions(no_index))
                .order_by(_fts.c.rowid.desc()))
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def _narrow(session: Session, conditions: Conditions) -> list[int] | None:
    """The ids the other filters allow when there are few of them; ``None`` when many."""
    conds = conditions(same)
    if not conds:
        return None
    limit = NARROW_LIMIT
    ids = list(session.scalars(select(Job.id).where(*conds).limit(limit + 1)))
    return ids if len(ids) <= limit else None


def _within(ids: Sequence[int] | None) -> list[ColumnElement]:
    if ids is None:
        return []
    listed = select(literal_column("value")).select_from(
        func.json_each(bindparam("narrow_ids", _json_list(ids), type_=String)))
    # The range is handed to FTS5 (it seeks); the list is checked per match, before the join.
    return [_fts.c.rowid.between(min(ids), max(ids)), no_index(_fts.c.rowid).in_(listed)]


def _json_list(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def _fts_match(text: str) -> ColumnElement:
    return _FTS_TABLE.op("MATCH")(bindparam(None, text, type_=String))


def _tsquery(queries: Mapping[str, TextQuery]) -> ColumnElement:
    return func.to_tsquery(literal_column("'simple'"), bindparam(None, pg_tsquery(queries), type_=String))
