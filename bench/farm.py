"""Farm throughput: dispatch overhead per batch, and how throughput grows with workers.

Real ``sdfarm worker`` processes on a real redis-server (started here on a free port) and a
real database (PostgreSQL, the compose default, when installed; else SQLite), rendering with
the fixed-cost fake renderer (``SDFARM_RENDERER=fake:SECONDS``, chosen only by this script):
it sleeps a set time per image instead of using a GPU, so what is measured is the queue.

    python bench/farm.py                                  # 1, 2, 4, 8 workers, 0.5 s per image
    python bench/farm.py --workers 1,2 --render 0.2 --database sqlite

Prints, after a warm-up of every worker:
- overhead per batch: one worker, a zero-cost renderer, many batches of 1 and of 4 images
  (the default batch size); the time per batch is everything but the render: broker round
  trip, claim, PNG encoding and fsync, recording the outcome;
- throughput of N workers on a stream of one-image batches, and efficiency
  = throughput(N) / (N x throughput(1)).
Targets: overhead <= 1% of a 0.5 s render; efficiency >= 0.9 at 8 workers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from sdfarm.config import Settings  # noqa: E402
from sdfarm.db.engine import session_factory  # noqa: E402
from sdfarm.db.models import FarmWorker, Job, JobStatus  # noqa: E402
from sdfarm.scheduler.jobfile import parse_job_file  # noqa: E402
from sdfarm.scheduler.plan import make_plan  # noqa: E402
from sdfarm.usecases.farm import submit  # noqa: E402
from tests.servers import PostgresServer, RedisServer, _postgres_bindir  # noqa: E402

_sweeps = 0


def plan_of(images: int, steps: int, batch_size: int = 1):
    global _sweeps
    _sweeps += 1
    text = (f'name = "bench{_sweeps}"\nmodel = "builtin:tiny"\nprompt = "bench {_sweeps}"\n'
            f'steps = {steps}\nwidth = 64\nheight = 64\nbatch_size = {batch_size}\n'
            f'seeds = "1-{images}"\n')
    return make_plan(parse_job_file(text, f"bench{_sweeps}.toml"))


def run_sweep(settings: Settings, images: int, steps: int, batch_size: int = 1,
              timeout: float = 600) -> float:
    """Submit one sweep, wait for it; returns its span: first claim to last finish (seconds)."""
    sweep_id = submit(settings, plan_of(images, steps, batch_size)).sweep_id
    factory = session_factory(settings.database_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as s:
            left = s.scalar(select(func.count()).where(Job.sweep_id == sweep_id,
                                                       Job.status != JobStatus.done))
            if not left:
                first, last = s.execute(select(func.min(Job.started_at), func.max(Job.finished_at))
                                        .where(Job.sweep_id == sweep_id)).one()
                return (last - first).total_seconds()
        time.sleep(0.05)
    raise SystemExit(f"sweep {sweep_id} did not finish within {timeout:.0f} s")


class Workers:
    def __init__(self, env: dict[str, str], settings: Settings, folder: Path) -> None:
        self.env, self.settings, self.folder = env, settings, folder
        self.procs: list[subprocess.Popen] = []

    def start(self, n: int, render: float) -> None:
        env = {**self.env, "SDFARM_RENDERER": f"fake:{render}"}
        first = len(self.procs)
        for i in range(first, first + n):
            log = open(self.folder / f"w{i}.log", "ab")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "sdfarm.cli", "worker", "--name", f"bench{i}@local",
                 "--loglevel", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT))
        # Ready = registered; Celery consumes a moment later, which the warm-up sweep absorbs.
        names = {f"bench{i}@local" for i in range(first, first + n)}
        while True:
            with session_factory(self.settings.database_url)() as s:
                seen = set(s.scalars(select(FarmWorker.name).where(FarmWorker.name.in_(names),
                                                                   FarmWorker.state != "stopped")))
            if seen == names:
                return
            if any(p.poll() is not None for p in self.procs):
                raise SystemExit(f"a worker exited at start; see {self.folder}")
            time.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()
        with session_factory(self.settings.database_url).begin() as s:
            s.query(FarmWorker).delete()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2,4,8", help="worker counts to measure")
    ap.add_argument("--render", type=float, default=0.5, help="seconds per image of the fake renderer")
    ap.add_argument("--steps", type=int, default=10, help="denoising steps the render is spread over")
    ap.add_argument("--per-worker", type=int, default=12, help="images per worker in a measured sweep")
    ap.add_argument("--overhead-batches", type=int, default=200)
    ap.add_argument("--database", choices=["postgresql", "sqlite"],
                    default="postgresql" if _postgres_bindir() else "sqlite")
    args = ap.parse_args()
    counts = [int(n) for n in args.workers.split(",")]

    folder = Path(tempfile.mkdtemp(prefix="sdfarm-bench-farm-"))
    redis = RedisServer("redis-server")
    postgres = PostgresServer(_postgres_bindir()) if args.database == "postgresql" else None
    try:
        url = postgres.create_database() if postgres else f"sqlite:///{folder / 'bench.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
        env.update(SDFARM_DATABASE_URL=url, SDFARM_BROKER_URL=redis.url,
                   SDFARM_OUTPUT_DIR=str(folder / "outputs"), SDFARM_MODEL_DIR=str(folder / "models"),
                   SDFARM_THREADS="1", SDFARM_LEASE_SECONDS="60")
        settings = Settings.from_env(env)
        workers = Workers(env, settings, folder)
        print(f"database {args.database}, redis {redis.url}, fake renderer, {os.cpu_count()} CPUs")

        workers.start(1, 0.0)
        run_sweep(settings, 20, args.steps)  # warm-up
        for size in (1, 4):
            span = run_sweep(settings, args.overhead_batches * size, args.steps, size)
            per_batch = span / args.overhead_batches
            print(f"overhead per batch of {size} image(s): {per_batch * 1000:.1f} ms = "
                  f"{per_batch / (0.5 * size) * 100:.2f}% of rendering them at 0.5 s per image "
                  f"(1 worker, {args.overhead_batches} batches, zero-cost renderer)")
        workers.stop()

        print(f"\n{'workers':>7} {'images':>7} {'seconds':>8} {'images/s':>9} {'efficiency':>10}")
        base = None
        for n in counts:
            workers.start(n, args.render)
            run_sweep(settings, 2 * n, args.steps)  # warm-up: every worker has rendered
            images = n * args.per_worker
            span = run_sweep(settings, images, args.steps)
            workers.stop()
            rate = images / span
            base = base or rate / n
            print(f"{n:>7} {images:>7} {span:>8.2f} {rate:>9.3f} {rate / (n * base):>10.3f}",
                  flush=True)
        print(f"\nideal: {1 / args.render:.3f} images/s per worker ({args.render} s per image)")
    finally:
        redis.stop()
        if postgres:
            postgres.stop()


if __name__ == "__main__":
    main()
