"""Planning, recording and enqueueing speed and memory: a grid of N cells, from the job file to
the broker.

    python bench/plan.py                        # 10,000 cells, SQLite only, median of 3
    python bench/plan.py --cells 1000000        # plan, SQLite, PostgreSQL, Redis
    python bench/plan.py --cells 1000000 --phases plan,postgres,redis

The grid is ``--x`` cfg values (columns) x N/x seeds (one prompt); every image of a column
shares a batch group, so it makes N/batch_size forward passes. Phases, each timed and with the
peak resident memory (RSS) of this process while it ran (sampled every 5 ms):

* ``plan``: parse the job file, resolve the model and its family, expand, order and batch;
* ``sqlite``: record the sweep in a fresh SQLite file (resume lookup of every key, then the
  insert, one transaction);
* ``postgres``: the same on a throwaway PostgreSQL cluster started here (as tests/servers.py
  does; needs the PostgreSQL binaries);
* ``redis``: read the queued batches of the PostgreSQL sweep back and publish one task per
  batch to a throwaway redis-server (``sdfarm submit``'s second half).

``postgres`` + ``redis`` is what ``sdfarm submit`` does with a recorded plan. No torch is
imported; the script says so at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdfarm.config import Settings  # noqa: E402
from sdfarm.db.engine import dispose_all, get_engine  # noqa: E402
from sdfarm.scheduler.jobfile import parse_job_file  # noqa: E402
from sdfarm.scheduler.prepare import plan_job, resolve_model  # noqa: E402
from sdfarm.usecases.record import record  # noqa: E402

JOB = """
name = "bench-grid"
model = "builtin:tiny"
prompt = "a lighthouse on a cliff at dusk, {{oil painting|watercolor}}"
prompts = {{ random = 1 }}
seeds = "1000-{last_seed}"
max_images = {cells}
width = 512
height = 512
[axes]
x = {{ cfg = "1-25 [{x}]" }}
"""

PHASES = ("plan", "sqlite", "postgres", "redis")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRss:
    """The highest RSS seen while a phase runs, from a sampling thread (ru_maxrss cannot be
    reset between phases)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRss:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


@contextmanager
def measured(results: dict[str, tuple[float, int]], name: str) -> Iterator[None]:
    with PeakRss() as peak:
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
    results[name] = (seconds, peak.peak)


@contextmanager
def servers(wanted: set[str]) -> Iterator[tuple[str | None, str | None]]:
    """A throwaway PostgreSQL database URL and redis URL, for the phases that want them."""
    from tests.servers import PostgresServer, RedisServer, _postgres_bindir

    pg = redis = None
    try:
        if wanted & {"postgres", "redis"}:
            bindir = _postgres_bindir()
            if bindir is None:
                sys.exit("bench: the postgres/redis phases need the PostgreSQL binaries")
            pg = PostgresServer(bindir)
        if "redis" in wanted:
            import shutil

            binary = shutil.which("redis-server")
            if binary is None:
                sys.exit("bench: the redis phase needs redis-server")
            redis = RedisServer(binary)
        yield (pg.create_database() if pg else None), (redis.url if redis else None)
    finally:
        if redis:
            redis.stop()
        if pg:
            pg.stop()


def one_run(work: Path, n: int, cells: int, x: int, phases: set[str]) -> dict[str, tuple[float, int]]:
    results: dict[str, tuple[float, int]] = {}
    model_dir = work / "models"
    text = JOB.format(x=x, last_seed=1000 + cells // x - 1, cells=max(cells, 1))
    with measured(results, "plan"):
        # As `sdfarm plan` does: the model resolved and its family found, then the expansion.
        job, mref = resolve_model(parse_job_file(text, str(work / "grid.toml")), model_dir)
        plan = plan_job(job, mref, model_dir)
    assert plan.images == cells // x * x, plan.images

    if "sqlite" in phases:
        settings = Settings(database_url=f"sqlite:///{work / f'plan-{n}.db'}",
                            output_dir=work / "out", model_dir=model_dir)
        get_engine(settings.database_url)  # create and migrate: once per database, apart
        with measured(results, "sqlite"):
            record(settings, plan)
    if phases & {"postgres", "redis"}:
        with servers(phases) as (pg_url, redis_url):
            settings = Settings(database_url=pg_url, broker_url=redis_url or "redis://unused",
                                output_dir=work / "out", model_dir=model_dir)
            get_engine(settings.database_url)
            with measured(results, "postgres"):
                sweep_id = record(settings, plan)
            if redis_url:
                with measured(results, "redis"):
                    sent = enqueue_sweep(settings, sweep_id)
                assert sent == len(plan.batches), (sent, len(plan.batches))
    dispose_all()
    return results


def enqueue_sweep(settings: Settings, sweep_id: int) -> int:
    """What ``submit`` does after recording: read the queued batches back as they are
    published."""
    from sdfarm.broker.queue import enqueue
    from sdfarm.db.batches import new_sweep_batches
    from sdfarm.db.engine import session_factory

    with session_factory(settings.database_url)() as session:
        return enqueue(settings, new_sweep_batches(session, sweep_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000, help="images in the grid")
    parser.add_argument("--x", type=int, default=100, help="cfg values (columns)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs (median); default 3 below 100,000 cells, else 1")
    parser.add_argument("--phases", default=None,
                        help=f"comma-separated, from {','.join(PHASES)}; default: all from "
                             "100,000 cells on, else plan,sqlite")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.cells < 100_000 else 1)
    phases = set((args.phases or ("plan,sqlite" if args.cells < 100_000 else ",".join(PHASES)))
                 .split(","))
    unknown = phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phase {sorted(unknown)[0]}; phases: {', '.join(PHASES)}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(repeats):
            runs.append(one_run(Path(tmp), n, args.cells, args.x, phases))
    print(f"{args.cells:,} cells ({args.x} cfg x {args.cells // args.x:,} seeds), "
          f"median of {repeats}:")
    describe: dict[str, str] = {
        "plan": "parse, prompts x axes x seeds, order, batch",
        "sqlite": "record: resume lookup + insert, one transaction",
        "postgres": "record: resume lookup + insert, one transaction",
        "redis": "queued batches read back + one task per batch published",
    }
    for name in PHASES:
        if name not in runs[0]:
            continue
        seconds = statistics.median(r[name][0] for r in runs)
        peak = max(r[name][1] for r in runs)
        print(f"  {name:9s} {seconds:8.2f} s  peak RSS {peak / 2**20:7.0f} MiB   ({describe[name]})")
    submit: Callable[[dict], float] = lambda r: r["plan"][0] + r["postgres"][0] + r["redis"][0]
    if {"postgres", "redis"} <= runs[0].keys():
        total = statistics.median(submit(r) for r in runs)
        peak = max(max(r[p][1] for p in ("plan", "postgres", "redis")) for r in runs)
        print(f"  submit    {total:8.2f} s  peak RSS {peak / 2**20:7.0f} MiB   "
              "(plan + postgres + redis: `sdfarm submit`; goal at 10^6: < 60 s, < 500 MB)")
    import resource

    print(f"  process peak RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"  torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
