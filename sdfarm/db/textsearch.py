"""Full-text search in SQL: SQLite FTS5 and PostgreSQL tsvector, behind one interface.

Relevance needs a score for every match, and a common word matches a third of a million-job
history; so a search ranks the newest :data:`RANK_WINDOW` matches by relevance (bm25 on SQLite,
ts_rank on PostgreSQL) and lists any older matches after them, newest first. Finding the
newest matches is bounded work: SQLite walks the FTS5 index from the newest job and stops at
the window; PostgreSQL walks the newest jobs, then lets its indexes find the rest (see
:func:`_pg_window`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from sdfarm.db.fulltext import COLUMNS, TextQuery, fts5_match, pg_tsquery
from sdfarm.db.models import Job

#: Matches ranked by relevance per search; older matches follow, newest first.
RANK_WINDOW = 1000
#: When the other filters select at most this many jobs, SQLite's full-text scan is limited to
#: those ids instead of checking each match against the jobs table.
NARROW_LIMIT = 10_000
#: On PostgreSQL, how many of the newest jobs a search reads in id order before it lets the
#: full-text index find older matches.
PG_RECENT_ROWS = 50_000

_fts = table("jobs_fts", column("rowid", Integer))
_FTS_TABLE = literal_column("jobs_fts")
_unary_plus = operators.custom_op("+")

#: Builds the filter conditions; given a column wrapper so SQLite can be kept off their indexes.
Conditions = Callable[[Callable[[ColumnElement], ColumnElement]], list[ColumnElement]]


@dataclass(frozen=True)
class Hit:
    id: int
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


def prepare_search(session: Session) -> None:
    """Before searching: SQLite indexes new prompts. PostgreSQL, for this transaction: plans
    every statement for its own values (psycopg prepares a statement run five times, and the
    generic plan of a prepared search cannot know how common its words are), and no JIT
    (compiling costs tens of ms, more than these queries run)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        session.execute(text("SET LOCAL jit = off"))
    else:
        sync_fulltext(session)


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
        return _pg_match(queries)
    include, exclude = fts5_match(queries)
    if include is None:
        return Job.id.not_in(select(_fts.c.rowid).where(_fts_match(exclude)))
    return Job.id.in_(select(_fts.c.rowid).where(_fts_match(include)))


def ranked_window(session: Session, queries: Mapping[str, TextQuery], conditions: Conditions,
                  window: int) -> list[Hit]:
    """The newest ``window`` jobs that match and pass ``conditions``, with relevance scores,
    newest first. ``queries`` must include at least one word (not only exclusions)."""
    if session.get_bind().dialect.name == "postgresql":
        return _pg_window(session, queries, conditions, window)
    scan = _sqlite_scan(session, queries, conditions, func.bm25(_FTS_TABLE))
    if scan is None:
        return []
    # bm25 is lower for better matches.
    return [Hit(i, -float(s)) for i, s in session.execute(scan.limit(window))]


def _pg_window(session: Session, queries: Mapping[str, TextQuery], conditions: Conditions,
               window: int) -> list[Hit]:
    """The newest matches in two bounded steps. PostgreSQL estimates the matches of a tsquery
    from each word alone; for two words that rarely meet it expects thousands of matches, walks
    the primary key from the newest job, and reads the whole table to find none. So: walk only
    the newest PG_RECENT_ROWS jobs that way, and if the window is not full, let the GIN index
    (and the filters' indexes) find the older matches, which are then few."""
    top = session.scalar(select(func.max(Job.id))) or 0
    cut = top - PG_RECENT_ROWS
    match = [_pg_match(queries), *conditions(same)]
    hits = [Hit(i, float(s)) for i, s in session.execute(
        select(Job.id, _pg_rank(queries)).where(*match, Job.id > cut)
        .order_by(Job.id.desc()).limit(window))]
    if len(hits) < window and cut > 0:
        # id + 0: an order the primary key cannot give, so the plan starts from the indexes
        # that select, and sorts the (few) matches; ranked afterwards, since ts_rank in this
        # query would run on every match the sort sees.
        ids = list(session.scalars(select(Job.id).where(*match, Job.id <= cut)
                                   .order_by((Job.id + 0).desc()).limit(window - len(hits))))
        if ids:
            score = dict(session.execute(select(Job.id, _pg_rank(queries)).where(Job.id.in_(ids))).all())
            hits += [Hit(i, float(score[i])) for i in ids]
    return hits


def older_matches(session: Session, queries: Mapping[str, TextQuery], conditions: Conditions,
                  before_id: int, limit: int | None, offset: int) -> list[int]:
    """Ids of matching jobs older than the window (id below ``before_id``), newest first."""
    if session.get_bind().dialect.name == "postgresql":
        stmt = (select(Job.id).where(_pg_match(queries), Job.id < before_id, *conditions(same))
                .order_by(Job.id.desc()))
    else:
        stmt = _sqlite_scan(session, queries, conditions, before_id=before_id)
        if stmt is None:
            return []
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def _sqlite_scan(session: Session, queries: Mapping[str, TextQuery], conditions: Conditions,
                 *extra: ColumnElement, before_id: int | None = None):
    """SELECT rowid[, extra] of the matches, newest first: the FTS5 index drives, always.

    When a filter keeps few jobs their ids are handed to the scan (FTS5 seeks to their range
    and checks the list without touching the jobs table); otherwise each match is looked up
    by primary key and the filters are checked there, never through their own indexes.
    ``None`` when the filters keep no job at all.
    """
    include, _ = fts5_match(queries)
    where = [_fts_match(include)]
    if before_id is not None:
        where.append(_fts.c.rowid < before_id)
    narrowed = _narrow(session, conditions)
    if narrowed == []:
        return None
    stmt = select(_fts.c.rowid, *extra).select_from(_fts)
    if narrowed is not None:
        where += _within(narrowed)
    elif conditions(same):
        stmt = stmt.join(Job, Job.id == _fts.c.rowid)
        where += conditions(no_index)
    return stmt.where(*where).order_by(_fts.c.rowid.desc())


def _narrow(session: Session, conditions: Conditions) -> list[int] | None:
    """The ids the filters keep, when one of them keeps at most NARROW_LIMIT jobs; else None.

    Each filter is counted on its own index first (index only, stopping past the limit), so a
    selective filter drives and a common one is never read to the end.
    """
    plain = conditions(same)
    if not plain:
        return None
    limit = NARROW_LIMIT
    counts = [session.scalar(select(func.count()).select_from(
        select(literal_column("1")).select_from(Job).where(cond).limit(limit + 1).subquery()))
        for cond in plain]
    best = min(range(len(plain)), key=counts.__getitem__)
    if counts[best] > limit:
        return None
    others = [c for k, c in enumerate(conditions(no_index)) if k != best]
    return list(session.scalars(select(Job.id).where(plain[best], *others)))


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


def _tsvector(name: str) -> ColumnElement:
    return literal_column(f"jobs.{COLUMNS[name][1]}")


def _tsquery(query: TextQuery) -> ColumnElement:
    return func.to_tsquery(literal_column("'simple'"), bindparam(None, pg_tsquery(query), type_=String))


def _pg_match(queries: Mapping[str, TextQuery]) -> ColumnElement:
    return and_(*(_tsvector(name).op("@@")(_tsquery(q)) for name, q in queries.items()))


def _pg_rank(queries: Mapping[str, TextQuery]) -> ColumnElement:
    # Normalization 1: divided by 1 + log(length), so a short prompt that is all about the
    # words ranks above a long one that mentions them once (as bm25 does on SQLite).
    ranks = [func.ts_rank(_tsvector(name), _tsquery(q), 1) for name, q in queries.items() if q.include]
    total = ranks[0]
    for r in ranks[1:]:
        total = total + r
    return total
