"""Queue overhead: the same images rendered through sdfarm versus a plain diffusers loop.

Both run in this process on the same pipeline class, device, model and settings, after a
warm-up, and both write the same PNG files: the same pixels with the same ``parameters`` and
``sdfarm`` text chunks (the plain loop saves them with PIL, without sdfarm's fsync). sdfarm's
side is the real path: plan, record every job in SQLite, claim, render, write the PNG with its
metadata, record the outcome.

    python bench/overhead.py                          # CPU, builtin:tiny, 64x64
    python bench/overhead.py --model builtin:sd15 --size 512 --steps 20 --images 32   # GPU
    python bench/overhead.py --model builtin:tiny-sdxl --threads 1   # another family

Prints images/s for each and the ratios. Targets: sdfarm unbatched >= 1.0x the plain loop;
sdfarm batched well above 1x (>= 2x on a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from PIL.PngImagePlugin import PngInfo

from sdfarm import __version__
from sdfarm.config import Settings
from sdfarm.metadata.a1111 import PARAMETERS_CHUNK, SDFARM_CHUNK, a1111_parameters, sdfarm_chunk
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.prepare import plan_job, resolve_model
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.worker.batch import process_renderer
from sdfarm.worker.builtin import ensure_builtin


def job_text(args, batch_size: int, first_seed: int) -> str:
    return (f'name = "bench"\nmodel = "{args.model}"\nprompt = "a lighthouse on a cliff, oil painting"\n'
            f'negative_prompt = "blurry"\nsampler = "{args.sampler}"\nsteps = {args.steps}\n'
            f'width = {args.size}\nheight = {args.size}\nbatch_size = {batch_size}\n'
            f'seeds = "{first_seed}-{first_seed + args.images - 1}"\n')


def make_plan(settings: Settings, args, batch_size: int, first_seed: int):
    job, mref = resolve_model(parse_job_file(job_text(args, batch_size, first_seed), "bench.toml"),
                              settings.model_dir)
    return plan_job(job, mref, settings.model_dir)


#: Seconds spent inside the renderer's ``render`` by the sdfarm runs (see :func:`timing`).
render_seconds: list[float] = []


def timing(renderer) -> None:
    """Count the time sdfarm spends inside ``renderer.render``: what is left of a run's wall
    time is the queue's own cost in the render's line (planning, claims, waiting for writes),
    a figure far steadier than the ratios on a noisy machine."""
    render = renderer.render

    def timed(*a, **kw):
        started = time.perf_counter()
        try:
            return render(*a, **kw)
        finally:
            render_seconds.append(time.perf_counter() - started)

    renderer.render = timed


def run_sdfarm(settings: Settings, args, batch_size: int, first_seed: int,
               outside: list[float] | None = None) -> float:
    render_seconds.clear()
    started = time.perf_counter()
    plan = make_plan(settings, args, batch_size, first_seed)
    sweep_id = record(settings, plan, force=True)  # measure rendering, not resume
    result = render_sweep_locally(settings, sweep_id)
    assert result.done == args.images, result
    wall = time.perf_counter() - started
    if outside is not None:
        outside.append((wall - sum(render_seconds)) / args.images)
    return args.images / wall


def png_texts(settings: Settings, args, first_seed: int) -> dict[int, tuple[str, str]]:
    """Per seed, the ``parameters`` and ``sdfarm`` chunks sdfarm writes for that image (job
    ids aside), so the plain loop writes the same PNGs."""
    plan = make_plan(settings, args, 1, first_seed)
    return {spec.seed: (a1111_parameters(spec, version=f"sdfarm {__version__}"),
                        sdfarm_chunk(spec, job_id=0, sweep_id=0))
            for spec in plan.specs}


def run_plain(pipe, args, out: Path, batch_size: int, first_seed: int,
              texts: dict[int, tuple[str, str]]) -> float:
    """What a user would write by hand: the pipeline in a loop, one generator per image, each
    PNG saved with its parameters."""
    import torch

    started = time.perf_counter()
    seeds = list(range(first_seed, first_seed + args.images))
    for i in range(0, len(seeds), batch_size):
        chunk = seeds[i:i + batch_size]
        images = pipe(prompt=["a lighthouse on a cliff, oil painting"] * len(chunk),
                      negative_prompt=["blurry"] * len(chunk), num_inference_steps=args.steps,
                      guidance_scale=args.cfg, width=args.size, height=args.size,
                      generator=[torch.Generator("cpu").manual_seed(s) for s in chunk]).images
        for seed, image in zip(chunk, images):
            info = PngInfo()
            info.add_text(PARAMETERS_CHUNK, texts[seed][0])
            info.add_itxt(SDFARM_CHUNK, texts[seed][1])
            image.save(out / f"{seed}.png", pnginfo=info)
    return args.images / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--batch", type=int, default=4, help="batch size of the batched runs")
    ap.add_argument("--sampler", default="Euler a")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="sdfarm-bench-"))
    base = Settings.from_env()
    settings = base.with_(database_url=f"sqlite:///{work / 'bench.db'}", output_dir=work / "out",
                          device=args.device, threads=args.threads or base.threads)
    if args.model.startswith("builtin:"):
        ensure_builtin(args.model.removeprefix("builtin:"), settings.model_dir)
    renderer = process_renderer(settings)
    timing(renderer)
    first = make_plan(settings, args, 1, 0).specs[0]
    pipe, base_config = renderer.pipeline(args.model, None, False, first.family, first.prediction)
    args.cfg = first.cfg  # the family's default, as sdfarm renders it
    from sdfarm.worker.schedulers import make_scheduler

    pipe.scheduler = make_scheduler(args.sampler, base_config)
    plain_out = work / "plain"
    plain_out.mkdir()

    # Warm-up both paths (pipeline load, kernels, SQLite file, allocator).
    run_sdfarm(settings, args, 1, 10_000_000)
    pipe.scheduler = make_scheduler(args.sampler, base_config)
    run_plain(pipe, args, plain_out, 1, 10_000_000, png_texts(settings, args, 10_000_000))

    rows = {"plain, unbatched": [], "sdfarm, unbatched": [], f"plain, batch {args.batch}": [],
            f"sdfarm, batch {args.batch}": []}
    outside: dict[int, list[float]] = {1: [], args.batch: []}
    for r in range(args.repeats):
        seed = 1000 * (r + 1)
        texts = png_texts(settings, args, seed)
        # Interleaved, so drift in machine speed hits both sides alike.
        rows["plain, unbatched"].append(run_plain(pipe, args, plain_out, 1, seed, texts))
        rows["sdfarm, unbatched"].append(run_sdfarm(settings, args, 1, seed, outside[1]))
        rows[f"plain, batch {args.batch}"].append(run_plain(pipe, args, plain_out, args.batch, seed, texts))
        rows[f"sdfarm, batch {args.batch}"].append(run_sdfarm(settings, args, args.batch, seed,
                                                               outside[args.batch]))

    print(f"device {renderer.device}, model {args.model}, {args.size}x{args.size}, {args.steps} steps, "
          f"{args.sampler}, {args.images} images x {args.repeats} repeats, threads {renderer.threads}")
    med = {k: statistics.median(v) for k, v in rows.items()}
    for name, values in rows.items():
        print(f"  {name:<22} {med[name]:8.2f} images/s   (min {min(values):.2f}, max {max(values):.2f})")
    for size, values in outside.items():
        print(f"  sdfarm time outside the render, batch {size}: "
              f"{1000 * statistics.median(values):6.2f} ms/image")
    plain = med["plain, unbatched"]
    print(f"  ratio sdfarm/plain, unbatched:            {med['sdfarm, unbatched'] / plain:.3f}  (target >= 1.0)")
    print(f"  ratio sdfarm batched/plain unbatched:     {med[f'sdfarm, batch {args.batch}'] / plain:.3f}")
    print(f"  ratio sdfarm batched/plain batched:       "
          f"{med[f'sdfarm, batch {args.batch}'] / med[f'plain, batch {args.batch}']:.3f}")


if __name__ == "__main__":
    main()
