"""history: full-text index over prompts, indexes for the numeric filters, imported extras

SQLite: an FTS5 table over jobs(prompt, negative_prompt) with external content. Jobs up to
``jobs_fts_state.indexed_up_to`` are in it; newer ones are added in one statement before a
search (``sdfarm.db.textsearch.sync_fulltext``), and triggers keep the indexed ones in sync on
delete and update. Inserts have no trigger on purpose: an insert trigger makes SQLite journal
every row of an executemany bulk insert, and indexing from the trigger makes FTS5 flush at
every row; together they tripled the cost of recording a 10,000-job sweep.
PostgreSQL: stored tsvectors of the prompt and of the negative prompt, each with a GIN index.
Both tokenize the same way: runs of letters and digits, lower-cased, accents kept.

Revision ID: 0002_history
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_history"
down_revision = "0001"
branch_labels = None
depends_on = None

#: (name, columns): the filters of `sdfarm history`, with created_at so that the newest-first
#: listing of one value is read from the index in order. Seed, sweep, status and date have
#: indexes since 0001.
INDEXES = (
    ("ix_jobs_cfg_created", ["cfg", "created_at"]),
    ("ix_jobs_steps_created", ["steps", "created_at"]),
    ("ix_jobs_sampler_created", ["sampler", "created_at"]),
    ("ix_jobs_model_created", ["model", "created_at"]),
    ("ix_jobs_model_hash_created", ["model_hash", "created_at"]),
    ("ix_jobs_size_created", ["width", "height", "created_at"]),
)

SQLITE_UP = (
    # remove_diacritics 0: PostgreSQL's 'simple' configuration keeps accents too.
    """CREATE VIRTUAL TABLE jobs_fts USING fts5(prompt, negative_prompt, content='jobs',
       content_rowid='id', tokenize='unicode61 remove_diacritics 0')""",
    """CREATE TABLE jobs_fts_state (id INTEGER PRIMARY KEY CHECK (id = 1),
       indexed_up_to INTEGER NOT NULL)""",
    "INSERT INTO jobs_fts(jobs_fts) VALUES ('rebuild')",
    "INSERT INTO jobs_fts_state VALUES (1, (SELECT coalesce(max(id), 0) FROM jobs))",
    """CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs
       WHEN old.id <= (SELECT indexed_up_to FROM jobs_fts_state) BEGIN
         INSERT INTO jobs_fts(jobs_fts, rowid, prompt, negative_prompt)
         VALUES ('delete', old.id, old.prompt, old.negative_prompt);
         -- SQLite gives the next insert max(id) + 1: once the newest jobs are deleted, their
         -- ids come back, so the mark must come down for those jobs to be indexed.
         UPDATE jobs_fts_state SET indexed_up_to = (SELECT coalesce(max(id), 0) FROM jobs)
         WHERE indexed_up_to > (SELECT coalesce(max(id), 0) FROM jobs);
       END""",
    # OF prompt, negative_prompt: the queue updates status and leases all the time, and those
    # updates must not touch the index.
    """CREATE TRIGGER jobs_fts_update AFTER UPDATE OF prompt, negative_prompt ON jobs
       WHEN old.id <= (SELECT indexed_up_to FROM jobs_fts_state) BEGIN
         INSERT INTO jobs_fts(jobs_fts, rowid, prompt, negative_prompt)
         VALUES ('delete', old.id, old.prompt, old.negative_prompt);
         INSERT INTO jobs_fts(rowid, prompt, negative_prompt)
         VALUES (new.id, new.prompt, new.negative_prompt);
       END""",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS jobs_fts_update",
    "DROP TRIGGER IF EXISTS jobs_fts_delete",
    "DROP TABLE IF EXISTS jobs_fts_state",
    "DROP TABLE IF EXISTS jobs_fts",
)

#: What PostgreSQL indexes of a text: punctuation becomes spaces first, so its parser sees the
#: same words as SQLite's unicode61 ("sci-fi" is "sci" and "fi", "(cat:1.2)" is "cat", "1", "2").
_PG_WORDS = "to_tsvector('simple'::regconfig, regexp_replace({}, '[[:punct:]]+', ' ', 'g'))"
# One tsvector per text rather than one with weights: the planner's word statistics are per
# column, and "blurry", common in negative prompts, must not look common in prompts.
PG_UP = (
    f"ALTER TABLE jobs ADD COLUMN prompt_tsv tsvector GENERATED ALWAYS AS ({_PG_WORDS.format('prompt')}) STORED",
    f"ALTER TABLE jobs ADD COLUMN negative_tsv tsvector GENERATED ALWAYS AS "
    f"({_PG_WORDS.format('negative_prompt')}) STORED",
    "CREATE INDEX ix_jobs_prompt_tsv ON jobs USING gin (prompt_tsv)",
    "CREATE INDEX ix_jobs_negative_tsv ON jobs USING gin (negative_tsv)",
)
PG_DOWN = (
    "DROP INDEX IF EXISTS ix_jobs_negative_tsv",
    "DROP INDEX IF EXISTS ix_jobs_prompt_tsv",
    "ALTER TABLE jobs DROP COLUMN IF EXISTS negative_tsv",
    "ALTER TABLE jobs DROP COLUMN IF EXISTS prompt_tsv",
)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extra_params", sa.JSON(), nullable=True))
        for name, columns in INDEXES:
            batch_op.create_index(name, columns, unique=False)
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_UP if dialect == "sqlite" else PG_UP if dialect == "postgresql" else ():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_DOWN if dialect == "sqlite" else PG_DOWN if dialect == "postgresql" else ():
        op.execute(statement)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for name, _ in reversed(INDEXES):
            batch_op.drop_index(name)
        batch_op.drop_column("extra_params")
