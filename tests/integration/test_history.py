"""Finding past jobs: full-text prompt search, every filter and their combinations, ranking,
paging, on SQLite (FTS5) and on a real PostgreSQL (tsvector + GIN)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update

from sdfarm.db import textsearch
from sdfarm.db.engine import session_factory
from sdfarm.db.fulltext import parse_text_query, tokens
from sdfarm.db.history import HistoryQuery, search_ids, search_jobs
from sdfarm.db.models import Job, JobStatus
from sdfarm.errors import HistoryQueryError
from tests.integration.history_support import T0, add_jobs, db_url  # noqa: F401 (fixture)


def prompts(url: str, query: HistoryQuery, **kw) -> list[str]:
    with session_factory(url).begin() as session:
        return [j.prompt for j in search_jobs(session, query, **kw)]


def ids(url: str, query: HistoryQuery, **kw) -> list[int]:
    with session_factory(url).begin() as session:
        return search_ids(session, query, **kw)


# --- the search syntax ----------------------------------------------------------------------

LIGHTHOUSES = [
    "a lighthouse on a cliff, stormy sea",
    "an old lighthouse at golden hour",
    "golden retriever at the hour of dusk",
    "lighting study of a teapot",
    "a castle, golden hour, sci-fi",
    "a café in Paris at night",
]


def test_all_words_must_appear_in_any_order_and_case(db_url):
    add_jobs(db_url, [{"prompt": p} for p in LIGHTHOUSES])
    assert set(prompts(db_url, HistoryQuery(prompt="HOUR Golden"))) == {
        "a castle, golden hour, sci-fi", "golden retriever at the hour of dusk",
        "an old lighthouse at golden hour"}


def test_a_quoted_phrase_needs_its_words_next_to_each_other(db_url):
    add_jobs(db_url, [{"prompt": p} for p in LIGHTHOUSES])
    assert set(prompts(db_url, HistoryQuery(prompt='"golden hour"'))) == {
        "an old lighthouse at golden hour", "a castle, golden hour, sci-fi"}


def test_a_prefix_finds_every_word_that_starts_with_it(db_url):
    add_jobs(db_url, [{"prompt": p} for p in LIGHTHOUSES])
    assert set(prompts(db_url, HistoryQuery(prompt="light*"))) == {
        "a lighthouse on a cliff, stormy sea", "an old lighthouse at golden hour",
        "lighting study of a teapot"}
    assert set(prompts(db_url, HistoryQuery(prompt='"old light*"'))) == {"an old lighthouse at golden hour"}


def test_minus_excludes_a_word_or_a_phrase(db_url):
    add_jobs(db_url, [{"prompt": p} for p in LIGHTHOUSES])
    assert set(prompts(db_url, HistoryQuery(prompt="golden -lighthouse"))) == {
        "golden retriever at the hour of dusk", "a castle, golden hour, sci-fi"}
    assert set(prompts(db_url, HistoryQuery(prompt='golden -"golden hour"'))) == {
        "golden retriever at the hour of dusk"}


def test_exclusions_alone_list_everything_else_newest_first(db_url):
    add_jobs(db_url, [{"prompt": p} for p in LIGHTHOUSES])
    assert prompts(db_url, HistoryQuery(prompt="-golden -light*")) == [
        "a café in Paris at night"]


def test_words_are_cut_like_the_prompt_so_punctuation_and_accents_match(db_url):
    add_jobs(db_url, [{"prompt": p} for p in LIGHTHOUSES])
    assert prompts(db_url, HistoryQuery(prompt="sci-fi")) == ["a castle, golden hour, sci-fi"]
    assert prompts(db_url, HistoryQuery(prompt="CAFÉ")) == ["a café in Paris at night"]
    assert prompts(db_url, HistoryQuery(prompt="cafe")) == []


@pytest.mark.parametrize("query", [
    'NEAR(cat dog)', 'cat OR dog', 'cat:1.2', "it's", '^cat', '"unbalanced cat', 'cat)',
    "'; DROP TABLE jobs; --", 'cat & !dog | fox', 'prompt : cat', '{prompt}: cat', 'cat\\',
])
def test_operators_and_quotes_in_user_text_are_plain_words(db_url, query):
    # Given prompts containing the words the query spells
    add_jobs(db_url, [{"prompt": "cat and dog near the fox, OR not"}, {"prompt": "a drop table"}])
    # When the query contains either backend's operators
    found = prompts(db_url, HistoryQuery(prompt=query))
    # Then it neither fails nor escapes: the operators are words, and a word that punctuation
    # cuts in two ("NEAR(cat") is a phrase, as "sci-fi" is
    expected = [p for p in ("a drop table", "cat and dog near the fox, OR not")
                if text_matches(query, p)]
    assert sorted(found) == sorted(expected)
    with session_factory(db_url)() as session:
        assert session.scalar(select(Job.id).limit(1)) is not None  # the table is still there


def test_a_query_with_no_words_is_an_error_naming_the_option():
    with pytest.raises(HistoryQueryError, match=r"--negative '\(\)': no words to search for"):
        HistoryQuery(negative="()")


def test_prompt_words_and_negative_prompt_words_are_searched_apart(db_url):
    add_jobs(db_url, [{"prompt": "blurry photo of a ghost", "negative_prompt": "sharp"},
                      {"prompt": "a crisp ghost", "negative_prompt": "blurry, lowres"}])
    assert prompts(db_url, HistoryQuery(prompt="blurry")) == ["blurry photo of a ghost"]
    assert prompts(db_url, HistoryQuery(negative="blurry")) == ["a crisp ghost"]
    assert prompts(db_url, HistoryQuery(prompt="ghost", negative="-blurry")) == ["blurry photo of a ghost"]
    assert prompts(db_url, HistoryQuery(prompt="ghost", negative="lowres")) == ["a crisp ghost"]


# --- ranking and paging ---------------------------------------------------------------------

def test_relevance_first_then_the_newest_of_equally_relevant_jobs(db_url):
    # Given a long prompt that mentions the word once, and short prompts that are all word,
    # two of them identical (equally relevant), recorded in this order
    ids_ = add_jobs(db_url, [
        {"prompt": "lighthouse beacon"},
        {"prompt": "a lighthouse far away behind the hills at the end of a long road through "
                   "the fields and forests of the north, with sheep, fences and old stone walls"},
        {"prompt": "lighthouse beacon"},
        {"prompt": "a sailing boat"},
    ])
    # Then the short prompts come first, the newer of the two identical ones first, and the
    # long one last
    assert ids(db_url, HistoryQuery(prompt="lighthouse")) == [ids_[2], ids_[0], ids_[1]]


@pytest.mark.parametrize("recent_rows", [100, 2])
def test_beyond_the_ranking_window_older_matches_follow_newest_first(db_url, monkeypatch, recent_rows):
    # Given more matches than the ranking window: the newest 3 are ranked (PostgreSQL finds
    # them among the newest jobs, or partly through the index when those hold too few)
    monkeypatch.setattr(textsearch, "RANK_WINDOW", 3)
    monkeypatch.setattr(textsearch, "PG_RECENT_ROWS", recent_rows)
    long = "moon over a quiet harbour with boats and nets and gulls"
    jobs = add_jobs(db_url, [{"prompt": p} for p in
                             ["moon", long, "moon", long, "moon", long, "moon"]])
    # Then the window (the newest three matches) is ordered by relevance, and the older
    # matches follow newest first
    window = [jobs[6], jobs[4], jobs[5]]
    older = [jobs[3], jobs[2], jobs[1], jobs[0]]
    query = HistoryQuery(prompt="moon")
    assert ids(db_url, query, limit=None) == window + older
    # And pages cut that one order anywhere
    pages = [ids(db_url, query, limit=2, offset=k) for k in range(0, 8, 2)]
    assert sum(pages, []) == window + older
    assert ids(db_url, query, limit=3, offset=5) == older[2:]


def test_listings_without_words_are_newest_first_and_page_through_everything(db_url):
    jobs = add_jobs(db_url, [{"prompt": f"p{i}"} for i in range(7)])
    assert ids(db_url, HistoryQuery(), limit=None) == jobs[::-1]
    assert ids(db_url, HistoryQuery(), limit=3, offset=3) == jobs[::-1][3:6]


# --- filters and combinations, against a plain-Python reading of the same rules ----------

WORDS = ["lighthouse", "castle", "forest", "golden", "hour", "portrait", "neon", "rain", "fox"]
MODELS = [("/models/dreamshaper_8.safetensors", "879db523c3"),
          ("/models/sd_xl_base_1.0.safetensors", "31e35c80fc"), ("builtin:tiny", None)]


#: (sampler, schedule) as recorded: sdfarm's, and ones only imported images have.
SAMPLINGS = [("Euler a", "Automatic"), ("DPM++ 2M", "Karras"), ("DPM++ 2M", "Automatic"),
             ("DPM++ 3M SDE", "Exponential"), ("Restart", "Automatic"),
             ("DPM++ 2M", "Align Your Steps")]


def random_jobs(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model, model_hash = rng.choice(MODELS)
        out.append({
            "prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))),
            "negative_prompt": rng.choice(["", "blurry", "blurry, lowres", "text"]),
            "seed": rng.choice([1, 2, 3, 1000, 2**40]), "model": model, "model_hash": model_hash,
            **dict(zip(("sampler", "schedule"), rng.choice(SAMPLINGS))),
            "steps": rng.choice([10, 20, 30]), "cfg": rng.choice([4.0, 6.5, 7.0, 8.0]),
            "width": rng.choice([512, 768]), "height": rng.choice([512, 768]),
            "status": rng.choice([JobStatus.done, JobStatus.done, JobStatus.failed, JobStatus.queued]),
            "created_at": T0 + timedelta(hours=rng.randint(0, 24 * 30)),
        })
    return out


def text_matches(query: str | None, text_: str) -> bool:
    if query is None:
        return True
    words = tokens(text_)
    for term in parse_text_query(query).terms:
        n = len(term.words)
        found = any(
            list(term.words[:-1]) == words[k:k + n - 1]
            and (words[k + n - 1].startswith(term.words[-1]) if term.prefix
                 else words[k + n - 1] == term.words[-1])
            for k in range(len(words) - n + 1))
        if found == term.exclude:
            return False
    return True


def oracle(rows: list[dict], q: HistoryQuery) -> set[int]:
    def ok(r: dict) -> bool:
        model_names = {"dreamshaper_8": "/models/dreamshaper_8.safetensors",
                       "sd_xl_base_1.0.safetensors": "/models/sd_xl_base_1.0.safetensors",
                       "tiny": "builtin:tiny"}
        return all([
            text_matches(q.prompt, r["prompt"]), text_matches(q.negative, r["negative_prompt"]),
            q.seed is None or r["seed"] == q.seed,
            q.model is None or r["model"] == model_names.get(q.model)
            or (r["model_hash"] or "").startswith(q.model),
            # a sampler name is the job's sampler, or its sampler and schedule
            q.sampler is None or q.sampler.casefold() in (
                r["sampler"].casefold(), f"{r['sampler']} {r['schedule']}".casefold()),
            q.schedule is None or r["schedule"].casefold() == q.schedule.casefold(),
            q.cfg is None or q.cfg[0] <= r["cfg"] <= q.cfg[1],
            q.steps is None or q.steps[0] <= r["steps"] <= q.steps[1],
            q.size is None or (r["width"], r["height"]) == q.size,
            not q.statuses or r["status"] in q.statuses,
            q.since is None or r["created_at"] >= q.since,
            q.until is None or r["created_at"] < q.until,
        ])
    return {r["id"] for r in rows if ok(r)}


QUERIES = [
    HistoryQuery(seed=1000), HistoryQuery(model="dreamshaper_8"), HistoryQuery(model="31e35c"),
    HistoryQuery(model="tiny"), HistoryQuery(sampler="dpm++ 2m karras"),
    HistoryQuery(sampler="DPM++ 3M SDE Exponential"), HistoryQuery(sampler="dpm++ 2m"),
    HistoryQuery(schedule="karras"), HistoryQuery(schedule="Align Your Steps"),
    HistoryQuery(sampler="DPM++ 2M", schedule="automatic"), HistoryQuery(sampler="Restart"),
    HistoryQuery(sampler="DPM++ 2M Karras", schedule="Exponential"), HistoryQuery(cfg=(6.5, 6.5)),
    HistoryQuery(cfg=(6, 8)), HistoryQuery(steps=(20, 30)), HistoryQuery(size=(512, 768)),
    HistoryQuery(statuses=(JobStatus.failed, JobStatus.queued)),
    HistoryQuery(since=T0 + timedelta(days=10), until=T0 + timedelta(days=12)),
    HistoryQuery(prompt="lighthouse", cfg=(7, 7)), HistoryQuery(prompt="golden hour", seed=2),
    HistoryQuery(prompt='"golden hour" -fox', model="879db523c3", steps=(10, 20)),
    HistoryQuery(prompt="light* rain", since=T0 + timedelta(days=5), statuses=(JobStatus.done,)),
    HistoryQuery(prompt="neon", negative="blurry -lowres", size=(768, 768)),
    HistoryQuery(prompt="-castle -forest", sampler="Euler a", cfg=(4, 6.5)),
    HistoryQuery(negative="text", seed=2**40, model="sd_xl_base_1.0.safetensors"),
    HistoryQuery(prompt="fox portrait", steps=(30, 30), until=T0 + timedelta(days=20)),
    HistoryQuery(prompt="hour", model="nothing-like-this"),
]


@pytest.mark.parametrize("narrow_limit, recent_rows", [(0, 50), (100_000, 100_000)],
                         ids=["full-text-first", "filters-first"])
def test_every_filter_and_combination_finds_exactly_the_jobs_it_describes(db_url, monkeypatch,
                                                                          narrow_limit, recent_rows):
    # Given 300 jobs with random prompts, models, samplers, settings, statuses and dates
    # (SQLite drives a combined query from the full-text index or from a selective filter;
    # PostgreSQL reads the newest jobs in id order, then older ones through the indexes)
    monkeypatch.setattr(textsearch, "NARROW_LIMIT", narrow_limit)
    monkeypatch.setattr(textsearch, "PG_RECENT_ROWS", recent_rows)
    rows = random_jobs(300)
    for row, job_id in zip(rows, add_jobs(db_url, rows), strict=True):
        row["id"] = job_id
    by_id = {r["id"]: r for r in rows}
    for q in QUERIES:
        # When searching with the filters
        found = ids(db_url, q, limit=None)
        # Then it finds exactly the jobs the rules describe, each once
        assert set(found) == oracle(rows, q) and len(found) == len(set(found)), q
        if not q.ranked:  # and a listing is newest first
            assert found == sorted(found, key=lambda i: (by_id[i]["created_at"], i), reverse=True)


# --- the full-text index stays in step with the jobs table ---------------------------------

def test_updated_and_deleted_jobs_are_searched_as_they_are_now(db_url):
    jobs = add_jobs(db_url, [{"prompt": "a red fox"}, {"prompt": "a grey wolf"}, {"prompt": "a brown bear"}])
    assert prompts(db_url, HistoryQuery(prompt="fox")) == ["a red fox"]  # indexes the three
    factory = session_factory(db_url)
    with factory.begin() as session:
        session.execute(update(Job).where(Job.id == jobs[0]).values(prompt="a white hare"))
        session.execute(delete(Job).where(Job.id == jobs[2]))
        # a status change is no text change (the queue does this all the time)
        session.execute(update(Job).where(Job.id == jobs[1]).values(status=JobStatus.failed))
    assert prompts(db_url, HistoryQuery(prompt="fox")) == []
    assert prompts(db_url, HistoryQuery(prompt="hare")) == ["a white hare"]
    assert prompts(db_url, HistoryQuery(prompt="bear")) == []
    assert prompts(db_url, HistoryQuery(prompt="wolf")) == ["a grey wolf"]


def test_a_new_job_that_takes_the_id_of_a_deleted_newest_job_is_found(tmp_path):
    # SQLite gives the next insert max(id) + 1: deleting the newest job frees its id
    url = f"sqlite:///{tmp_path / 'reuse.db'}"
    first = add_jobs(url, [{"prompt": "a red fox"}, {"prompt": "a grey wolf"}])
    assert prompts(url, HistoryQuery(prompt="wolf")) == ["a grey wolf"]
    with session_factory(url).begin() as session:
        session.execute(delete(Job).where(Job.id == first[1]))
    again = add_jobs(url, [{"prompt": "a snowy owl"}])
    assert again == [first[1]]
    assert prompts(url, HistoryQuery(prompt="owl")) == ["a snowy owl"]
    assert prompts(url, HistoryQuery(prompt="wolf")) == []
    with session_factory(url).begin() as session:
        session.execute(text("INSERT INTO jobs_fts(jobs_fts, rank) VALUES ('integrity-check', 1)"))


def test_the_index_and_its_triggers_exist_after_every_migration(tmp_path):
    # Other features migrate the jobs table on branches of their own; a migration that
    # rebuilt the table would silently drop the triggers
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    with session_factory(url)() as session:
        names = set(session.scalars(text("SELECT name FROM sqlite_master")))
    assert {"jobs_fts", "jobs_fts_state", "jobs_fts_delete", "jobs_fts_update",
            "ix_jobs_cfg_created", "ix_jobs_size_created"} <= names


# --- query plans: index-served, whatever the combination -----------------------------------

PLAN_QUERIES = [
    HistoryQuery(prompt="lighthouse"), HistoryQuery(prompt="lighthouse", cfg=(7, 7)),
    HistoryQuery(prompt="lighthouse", seed=3), HistoryQuery(prompt='"golden hour" -fox', steps=(20, 30)),
    HistoryQuery(prompt="light*", model="dreamshaper_8", since=T0),
    HistoryQuery(seed=3), HistoryQuery(cfg=(6, 8)), HistoryQuery(model="879db523c3"),
    HistoryQuery(sweep_id=1), HistoryQuery(size=(768, 512)), HistoryQuery(sampler="Euler a"),
    HistoryQuery(schedule="Karras"), HistoryQuery(prompt="lighthouse", sampler="DPM++ 2M Karras"),
]


def test_sqlite_serves_every_search_from_indexes(tmp_path, monkeypatch):
    from tests.integration.history_support import StatementLog

    url = f"sqlite:///{tmp_path / 'plans.db'}"
    add_jobs(url, random_jobs(200))
    for narrow_limit in (0, 100_000):
        monkeypatch.setattr(textsearch, "NARROW_LIMIT", narrow_limit)
        for q in PLAN_QUERIES:
            log = StatementLog(url)
            try:
                ids(url, q)
            finally:
                log.close()
            with session_factory(url)() as session:
                for statement, params in log.statements:
                    plan = [row[3] for row in session.connection().exec_driver_sql(
                        f"EXPLAIN QUERY PLAN {statement}", params)]
                    # No full scan of jobs and no full-text scan without MATCH
                    assert not [p for p in plan if p in ("SCAN jobs", "SCAN j")], (q, statement, plan)
                    assert not [p for p in plan if "VIRTUAL TABLE INDEX 0:" in p and "M" not in p.split(":")[1]], plan


def test_postgresql_can_serve_every_search_from_indexes(postgres_url):
    from tests.integration.history_support import StatementLog

    add_jobs(postgres_url, random_jobs(200))
    for q in PLAN_QUERIES:
        log = StatementLog(postgres_url)
        try:
            ids(postgres_url, q)
        finally:
            log.close()
        with session_factory(postgres_url)() as session:
            conn = session.connection()
            # Tiny tables are cheaper to scan; forbid scans to see an index path exists
            conn.exec_driver_sql("SET enable_seqscan = off")
            for statement, params in log.statements:
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", params))
                assert "Seq Scan on jobs" not in plan, (q, statement, plan)
