"""History search speed: a million synthetic jobs, then timed searches, on SQLite and PostgreSQL.

    python bench/history.py                         # 1,000,000 jobs, SQLite and PostgreSQL
    python bench/history.py --rows 100000 --backends sqlite
    python bench/history.py --pg-url postgresql+psycopg://user@host/emptydb

Fills a fresh database through the app's own migrations with jobs shaped like real ones
(sweeps of 1-100 images sharing a prompt, tag-style and sentence-style prompts of 8-80 words
over a Zipf-distributed vocabulary of ~20,000 words, typical negative prompts, A1111 settings),
inserting in bulk (executemany on SQLite, COPY on PostgreSQL). Then times each kind of search
through ``search_jobs`` (one transaction each, as the CLI does; Job rows loaded), and prints
p50/p95 per kind, the fill times, the database sizes and the plans of representative queries.
Without --pg-url it starts a throwaway PostgreSQL (tests/servers.py). Targets: prompt search
p95 < 50 ms, seed lookup < 5 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.servers

from sqlalchemy import text  # noqa: E402

from sdfarm.db.engine import dispose_all, get_engine, session_factory  # noqa: E402
from sdfarm.db.history import HistoryQuery, search_jobs  # noqa: E402
from sdfarm.db.textsearch import sync_fulltext  # noqa: E402

COLUMNS = ("sweep_id", "seq", "key", "status", "model", "model_hash", "prompt", "negative_prompt",
           "seed", "sampler", "steps", "cfg", "width", "height", "clip_skip", "batch_index",
           "output_path", "sha256", "attempts", "created_at", "finished_at")
CHUNK = 50_000

QUALITY = ("masterpiece, best quality, highly detailed, ultra detailed, 8k, 4k, sharp focus, "
           "intricate details, award winning, trending on artstation, photorealistic, hdr, "
           "professional photography, cinematic, absurdres, high resolution, detailed background").split(", ")
SUBJECTS = ("lighthouse, cat, dog, woman, man, castle, forest, mountain, city street, robot, dragon, "
            "knight, girl, old man, sailing ship, sports car, spaceship, temple, garden, river, "
            "ocean, village, fox, owl, wolf, horse, oak tree, flowers, cottage, waterfall, desert, "
            "samurai, witch, astronaut, tiger, bridge, harbour, cathedral, train station, "
            "mushroom house, cyborg, mermaid, library, market, lantern, teapot").split(", ")
ADJECTIVES = ("old, small, giant, ancient, beautiful, dark, bright, red, blue, green, golden, silver, "
              "misty, stormy, quiet, abandoned, floating, glowing, frozen, overgrown, tiny, "
              "futuristic, ruined, cozy, majestic").split(", ")
PLACES = ("on a cliff, in the rain, at night, under the stars, in a snowy forest, by the sea, in a "
          "neon city, on a hill, in the desert, underwater, in a meadow, on the moon, in the fog, "
          "at the edge of the world").split(", ")
STYLES = ("oil painting, watercolor, digital art, concept art, anime style, photograph, "
          "illustration, pencil sketch, 3d render, pixel art, cyberpunk, steampunk, fantasy art, "
          "surreal, impressionism, ukiyo-e, art nouveau, studio ghibli style, low poly").split(", ")
LIGHTING = ("cinematic lighting, volumetric light, golden hour, dramatic sky, soft light, rim light, "
            "sunset, moonlight, neon lights, studio lighting, god rays, backlit, overcast").split(", ")
TAGS = ("1girl, solo, long hair, looking at viewer, smile, blue eyes, short hair, blonde hair, "
        "upper body, outdoors, sky, cloud, day, dress, holding, standing, full body, from side, "
        "wind, scenery, water, reflection, depth of field, bokeh, blurry background").split(", ")
NEGATIVES = ("blurry, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, "
             "fewer digits, cropped, worst quality, low quality, normal quality, jpeg artifacts, "
             "signature, watermark, username, deformed, ugly, mutated, disfigured, extra limbs, "
             "easynegative, nsfw").split(", ")
SAMPLERS = ["Euler a", "Euler a", "DPM++ 2M Karras", "DPM++ 2M Karras", "DPM++ SDE Karras",
            "DPM++ 2M SDE Karras", "Euler", "DDIM", "UniPC", "DPM++ 3M SDE Exponential"]
SIZES = [(512, 512), (512, 512), (512, 768), (768, 512), (768, 768), (1024, 1024), (832, 1216)]
_SYLLABLES = ("ka lo mi ra ven tor el an is ur bel dra mon sil qua zen pho lyn thu gor ash "
              "kel mar ri sa to").split()


class Corpus:
    """Deterministic synthetic history; remembers word counts to pick search words."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        rare = set()
        while len(rare) < 20_000:
            rare.add("".join(self.rng.choice(_SYLLABLES) for _ in range(self.rng.randint(2, 4))))
        self.rare = sorted(rare)
        self.rng.shuffle(self.rare)
        # Zipf over the long tail: artist names, LoRA and embedding names, odd words.
        weights = [1 / (k + 1) ** 1.07 for k in range(len(self.rare))]
        self.rare_cum = list(_accumulate(weights))
        self.models = [(f"/models/{n}.safetensors", "%010x" % self.rng.getrandbits(40)) for n in (
            "v1-5-pruned-emaonly", "dreamshaper_8", "realisticVision_v60", "deliberate_v3",
            "anything-v5", "revAnimated_v122", "sd_xl_base_1.0", "juggernautXL_v9",
            "protovisionXL", "counterfeit_v30", "epicrealism_v5", "majicmix_v7")]
        self.words: Counter[str] = Counter()
        self.seeds: list[int] = []
        self.sweeps: list[int] = []

    def rare_word(self) -> str:
        return self.rare[_bisect(self.rare_cum, self.rng.random() * self.rare_cum[-1])]

    def prompt(self) -> str:
        r = self.rng
        parts: list[str] = []
        if r.random() < 0.6:
            parts += r.sample(QUALITY, r.randint(1, 5))
        if r.random() < 0.4:  # tag style
            parts += r.sample(TAGS, r.randint(3, 10))
        else:  # sentence style
            parts.append(f"a {r.choice(ADJECTIVES)} {r.choice(SUBJECTS)} {r.choice(PLACES)}")
            if r.random() < 0.4:
                parts.append(f"{r.choice(ADJECTIVES)} {r.choice(SUBJECTS)}")
        parts += r.sample(STYLES, r.randint(0, 2)) + r.sample(LIGHTING, r.randint(0, 3))
        parts += [self.rare_word() for _ in range(r.randint(0, 4))]
        if r.random() < 0.3:
            parts.append(f"by {self.rare_word()} {self.rare_word()}")
        if r.random() < 0.25:
            parts.append(f"<lora:{self.rare_word()}:{r.choice(['0.6', '0.7', '0.8', '1'])}>")
        return ", ".join(parts)

    def negative(self) -> str:
        return ", ".join(self.rng.sample(NEGATIVES, self.rng.randint(0, 12)))

    def rows(self, n: int, now: datetime) -> Iterator[list[tuple]]:
        """``n`` jobs in sweeps, oldest first over two years, in chunks."""
        r = self.rng
        start = now - timedelta(days=730)
        step = timedelta(days=730) / n
        chunk: list[tuple] = []
        job = 0
        sweep = 0
        while job < n:
            sweep += 1
            self.sweeps.append(sweep)
            size = min(n - job, max(1, int(r.expovariate(1 / 24))))
            prompt, negative = self.prompt(), self.negative()
            self.words.update(w for w in prompt.replace(",", " ").split())
            model, model_hash = r.choice(self.models)
            sampler, (width, height) = r.choice(SAMPLERS), r.choice(SIZES)
            steps, cfg = r.choice([20, 20, 25, 30, 30, 40, 50]), r.choice([4, 5, 6, 6.5, 7, 7, 7, 7.5, 8, 9, 10])
            for seq in range(size):
                when = start + step * job
                seed = r.getrandbits(32)
                if r.random() < 0.001:
                    self.seeds.append(seed)
                status = "done" if r.random() < 0.97 else "failed"
                chunk.append((sweep, seq, "%032x" % r.getrandbits(128), status, model, model_hash,
                               prompt, negative, seed, sampler, steps, float(cfg), width, height,
                               1, seq // 4, f"/outputs/s-{sweep}/{seq:05d}-{seed}.png",
                               "%064x" % r.getrandbits(256), 1, when, when))
                job += 1
                if len(chunk) >= CHUNK:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for v in values:
        total += v
        yield total


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def fill(url: str, rows: int) -> tuple[Corpus, dict[str, float]]:
    engine = get_engine(url)  # creates the schema through the migrations
    corpus = Corpus()
    now = datetime(2026, 11, 1)
    times: dict[str, float] = {}
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("BEGIN")
            sweeps = 0
            for chunk in corpus.rows(rows, now):
                new = max(r[0] for r in chunk)
                cur.executemany("INSERT INTO sweeps (id, name, kind, created_at, output_dir, batch_size, "
                                "allow_pickle, priority) VALUES (?, 'bench', 'render', ?, '/outputs', 4, 0, 0)",
                                [(s, now) for s in range(sweeps + 1, new + 1)])
                sweeps = new
                cur.executemany(f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(COLUMNS))})", chunk)
            cur.execute("COMMIT")
        else:
            sweeps = 0
            for chunk in corpus.rows(rows, now):
                new = max(r[0] for r in chunk)
                with cur.copy("COPY sweeps (id, name, kind, created_at, output_dir, batch_size, "
                              "allow_pickle, priority) FROM STDIN") as copy:
                    for s in range(sweeps + 1, new + 1):
                        copy.write_row((s, "bench", "render", now, "/outputs", 4, False, 0))
                sweeps = new
                with cur.copy(f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in chunk:
                        copy.write_row(row)
            cur.execute("SELECT setval(pg_get_serial_sequence('sweeps', 'id'), (SELECT max(id) FROM sweeps))")
            raw.commit()
    finally:
        raw.close()
    times["bulk insert"] = time.perf_counter() - started
    started = time.perf_counter()
    with session_factory(url).begin() as session:
        if engine.dialect.name == "sqlite":
            sync_fulltext(session)  # what the first search after the inserts would do
        else:
            session.execute(text("ANALYZE jobs"))  # what autovacuum does after a bulk load
    times["full-text index" if engine.dialect.name == "sqlite" else "ANALYZE"] = time.perf_counter() - started
    return corpus, times


def queries(corpus: Corpus, n: int) -> dict[str, list[HistoryQuery]]:
    r = random.Random(2)
    ranked = [w for w, _ in corpus.words.most_common() if w.isalpha()]
    total = sum(corpus.words.values())
    common = ranked[:15]
    mid = [w for w in ranked if 0.002 < corpus.words[w] / total < 0.02]
    rare = [w for w in ranked if 3 <= corpus.words[w] <= 30]
    phrases = ['"golden hour"', '"best quality"', '"looking at viewer"', '"oil painting"',
               '"dramatic sky"', '"old lighthouse"', '"neon city"', '"sailing ship"']
    prefixes = ["light*", "paint*", "cinem*", "golden*", "dra*", "ven*", "mar*", "cas*"]
    pick = lambda seq: [r.choice(seq) for _ in range(n)]  # noqa: E731
    since = datetime(2026, 11, 1) - timedelta(days=30)
    return {
        "prompt: common word": [HistoryQuery(prompt=w) for w in pick(common)],
        "prompt: mid word": [HistoryQuery(prompt=w) for w in pick(mid)],
        "prompt: rare word": [HistoryQuery(prompt=w) for w in pick(rare)],
        "prompt: two words": [HistoryQuery(prompt=f"{a} {b}") for a, b in zip(pick(mid), pick(common))],
        "prompt: phrase": [HistoryQuery(prompt=p) for p in pick(phrases)],
        "prompt: prefix": [HistoryQuery(prompt=p) for p in pick(prefixes)],
        "prompt: word -exclude": [HistoryQuery(prompt=f"{a} -{b}") for a, b in zip(pick(mid), pick(common))],
        "prompt + cfg": [HistoryQuery(prompt=w, cfg=(7, 7)) for w in pick(mid)],
        "prompt + cfg range + 30d": [HistoryQuery(prompt=w, cfg=(6, 8), since=since) for w in pick(common)],
        "prompt + seed": [HistoryQuery(prompt=w, seed=s) for w, s in zip(pick(common), pick(corpus.seeds))],
        "prompt + model + size": [HistoryQuery(prompt=w, model="dreamshaper_8", size=(512, 768)) for w in pick(mid)],
        "seed lookup": [HistoryQuery(seed=s) for s in pick(corpus.seeds)],
        "sweep listing": [HistoryQuery(sweep_id=s) for s in pick(corpus.sweeps)],
        "cfg = 7, newest": [HistoryQuery(cfg=(7, 7)) for _ in range(n)],
        "model + sampler, newest": [HistoryQuery(model="juggernautXL_v9", sampler="DPM++ 2M Karras")
                                    for _ in range(n)],
    }


def time_queries(url: str, kinds: dict[str, list[HistoryQuery]]) -> dict[str, tuple[float, float, float]]:
    factory = session_factory(url)
    out = {}
    for kind, qs in kinds.items():
        times = []
        limit = None if kind == "sweep listing" else 20
        for q in [qs[0], *qs]:  # the first one warms the caches and is not counted
            started = time.perf_counter()
            with factory.begin() as session:
                found = search_jobs(session, q, limit=limit)
            times.append(time.perf_counter() - started)
            assert found is not None
        times = times[1:]
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
        out[kind] = (statistics.median(times) * 1000, p95 * 1000, max(times) * 1000)
    return out


def sizes(url: str) -> list[str]:
    engine = get_engine(url)
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # outside a transaction: the WAL holds the bulk insert
        try:                           # until a checkpoint moves it into the database file
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
        path = Path(engine.url.database)
        total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
        lines = [f"database file {total / 1e6:,.0f} MB"]
        with engine.connect() as conn:
            try:
                rows = conn.exec_driver_sql(
                    "SELECT CASE WHEN name LIKE 'jobs_fts%' THEN 'full-text index' "
                    "WHEN name LIKE 'ix_%' OR name LIKE 'sqlite_autoindex%' THEN 'b-tree indexes' "
                    "ELSE name END, sum(pgsize) FROM dbstat GROUP BY 1 ORDER BY 2 DESC").all()
                lines += [f"  {name}: {size / 1e6:,.0f} MB" for name, size in rows if size > 1e6]
            except Exception:  # dbstat is not compiled into every SQLite
                pass
        return lines
    with engine.connect() as conn:
        db, table, heap, tsv = conn.exec_driver_sql(
            "SELECT pg_database_size(current_database()), pg_total_relation_size('jobs'), "
            "pg_table_size('jobs'), pg_relation_size('ix_jobs_prompt_tsv') + pg_relation_size('ix_jobs_negative_tsv')").one()
        idx = conn.exec_driver_sql("SELECT pg_indexes_size('jobs')").scalar()
    return [f"database {db / 1e6:,.0f} MB; jobs table {heap / 1e6:,.0f} MB (with TOAST), indexes "
            f"{idx / 1e6:,.0f} MB of which GIN full-text {tsv / 1e6:,.0f} MB; total {table / 1e6:,.0f} MB"]


def plans(url: str, corpus: Corpus) -> list[str]:
    """EXPLAIN of the statements behind three representative searches."""
    from tests.integration.history_support import StatementLog

    engine = get_engine(url)
    out = []
    common = corpus.words.most_common(1)[0][0]
    for q in (HistoryQuery(prompt=common, cfg=(7, 7)), HistoryQuery(prompt="lighthouse", seed=corpus.seeds[0]),
              HistoryQuery(cfg=(6, 8), sampler="Euler a")):
        log = StatementLog(url)
        try:
            with session_factory(url).begin() as session:
                search_jobs(session, q)
        finally:
            log.close()
        out.append(f"  {q.prompt or ''} {'seed' if q.seed else ''} {'cfg' if q.cfg else ''}".rstrip())
        with engine.connect() as conn:
            for statement, params in log.statements:
                if "jobs_fts_state" in statement or "max(id)" in statement or "FROM jobs \nWHERE jobs.id IN" in statement:
                    continue
                explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
                rows = conn.exec_driver_sql(explain + statement, params).all()
                plan = [r[3] for r in rows] if engine.dialect.name == "sqlite" else [r[0] for r in rows]
                out.append("    " + " ".join(statement.split())[:110] + " ...")
                out += [f"      {p}" for p in plan]
    return out


def run_backend(name: str, url: str, rows: int, n: int, show_plans: bool) -> None:
    print(f"\n== {name}: {rows:,} jobs", flush=True)
    corpus, fill_times = fill(url, rows)
    for what, seconds in fill_times.items():
        print(f"  {what}: {seconds:,.1f} s ({seconds / rows * 1e6:.1f} us per job)", flush=True)
    for line in sizes(url):
        print(f"  {line}")
    print(f"  {'search':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   ({n} searches each, limit 20)")
    for kind, (p50, p95, worst) in time_queries(url, queries(corpus, n)).items():
        print(f"  {kind:<28} {p50:8.1f} {p95:8.1f} {worst:8.1f}", flush=True)
    if show_plans:
        print("  query plans:")
        for line in plans(url, corpus):
            print(line)
    dispose_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", help="an empty PostgreSQL database (default: start one)")
    parser.add_argument("--searches", type=int, default=40, help="searches timed per kind")
    parser.add_argument("--plans", action="store_true", help="print query plans")
    args = parser.parse_args()
    backends = args.backends.split(",")
    with tempfile.TemporaryDirectory(prefix="sdfarm-bench-") as tmp:
        if "sqlite" in backends:
            run_backend("SQLite (FTS5)", f"sqlite:///{Path(tmp) / 'history.db'}", args.rows,
                        args.searches, args.plans)
        if "postgresql" in backends:
            server = None
            url = args.pg_url
            if url is None:
                from tests.servers import PostgresServer, _postgres_bindir

                bindir = _postgres_bindir()
                if bindir is None:
                    sys.exit("PostgreSQL is not installed: pass --pg-url or --backends sqlite")
                server = PostgresServer(bindir)
                url = server.create_database()
            try:
                run_backend("PostgreSQL (tsvector + GIN)", url, args.rows, args.searches, args.plans)
            finally:
                if server is not None:
                    server.stop()



if __name__ == "__main__":
    main()
