"""Planning speed: a 10,000-cell grid expanded and recorded in a fresh SQLite database.

    python bench/plan.py                 # 100 cfg x 100 steps, 1 prompt, 1 seed
    python bench/plan.py --repeats 5

Prints seconds for each phase (median of the repeats): expansion (parse the job file, resolve
the model and its family, expand prompts x axes x seeds, order and batch), the database insert
(resume lookup of every key plus one bulk insert, in one transaction), and their total. The schema set-up, once per process, is
printed apart. Target: total < 1 s. No torch is imported; the script says so at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sdfarm.config import Settings
from sdfarm.db.engine import dispose_all, get_engine
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.prepare import plan_job, resolve_model
from sdfarm.usecases.record import record

JOB = """
name = "bench-grid"
model = "builtin:tiny"
prompt = "a lighthouse on a cliff at dusk, {{oil painting|watercolor}}"
prompts = {{ random = 1 }}
seeds = [1000]
width = 512
height = 512
[axes]
x = {{ cfg = "1-25 [{x}]" }}
y = {{ steps = "1-{y}" }}
"""


def one_run(work: Path, n: int, x: int, y: int) -> tuple[float, float, float]:
    settings = Settings(database_url=f"sqlite:///{work / f'plan-{n}.db'}", output_dir=work / "out",
                        model_dir=work / "models")
    started = time.perf_counter()
    get_engine(settings.database_url)  # create and migrate: once per process, measured apart
    setup = time.perf_counter() - started

    started = time.perf_counter()
    # As `sdfarm plan` does: the model resolved and its family found, then the expansion.
    job, mref = resolve_model(parse_job_file(JOB.format(x=x, y=y), str(work / "grid.toml")),
                              settings.model_dir)
    plan = plan_job(job, mref, settings.model_dir)
    expansion = time.perf_counter() - started
    assert plan.images == x * y, plan.images

    started = time.perf_counter()
    record(settings, plan)
    insert = time.perf_counter() - started
    return setup, expansion, insert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x", type=int, default=100, help="cfg values (columns)")
    parser.add_argument("--y", type=int, default=100, help="steps values (rows)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.repeats):
            rows.append(one_run(Path(tmp), n, args.x, args.y))
            dispose_all()
    setup, expansion, insert = (statistics.median(col) for col in zip(*rows))
    print(f"{args.x * args.y} cells ({args.x} cfg x {args.y} steps), SQLite, median of {args.repeats}:")
    print(f"  expansion  {expansion:6.3f} s   (parse, prompts x axes x seeds, order, batch)")
    print(f"  DB insert  {insert:6.3f} s   (resume lookup of every key + bulk insert, one transaction)")
    print(f"  total      {expansion + insert:6.3f} s   (target < 1 s)")
    print(f"  schema set-up, once per process: {setup:.3f} s")
    print(f"  torch imported: {'torch' in sys.modules}")


if __name__ == "__main__":
    main()
