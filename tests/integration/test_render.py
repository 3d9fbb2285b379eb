"""Rendering end to end on the embedded default: SQLite, the in-process executor and the real
diffusers pipeline of builtin:tiny."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select, update

from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus, Sweep
from sdfarm.metadata.chunks import read_png_text
from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import render_batch
from sdfarm.worker.render import FakeRenderer
from tests.conftest import deadline, write_job

JOB = """
name = "cats"
model = "builtin:tiny"
prompt = "a cat"
negative_prompt = "blurry"
steps = 4
width = 64
height = 64
seeds = {seeds}
batch_size = {batch_size}
sampler = "{sampler}"
"""


def render_file(settings, tmp_path, seeds="[1, 2, 3, 4]", batch_size=4, sampler="Euler a", name="job.toml"):
    path = write_job(tmp_path, JOB.format(seeds=seeds, batch_size=batch_size, sampler=sampler), name)
    plan = load_plan(settings, path)
    # force: these tests compare fresh renders; resume would hand back the earlier image.
    sweep_id = record(settings, plan, force=True)
    result = render_sweep_locally(settings, sweep_id)
    return sweep_id, result


def jobs_of(settings, sweep_id) -> list[Job]:
    with session_factory(settings.database_url)() as s:
        return list(s.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.seq)))


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_a_seed_sweep_renders_every_image_and_records_it_done(settings, tiny_model, tmp_path):
    sweep_id, result = render_file(settings, tmp_path)
    assert (result.done, result.failed) == (4, 0)
    jobs = jobs_of(settings, sweep_id)
    assert [j.seed for j in jobs] == [1, 2, 3, 4]
    for job in jobs:
        assert job.status == JobStatus.done and job.attempts == 1
        assert Path(job.output_path).is_file()
        assert job.sha256 and job.model_hash and len(job.model_hash) == 10
        assert job.device == "cpu" and job.threads == 2 and job.render_seconds > 0
        assert (job.pass_size, job.pass_index) == (4, job.seq)
        assert job.finished_at >= job.started_at
        with Image.open(job.output_path) as im:
            assert im.size == (64, 64)


def test_different_seeds_give_different_pixels(settings, tiny_model, tmp_path):
    sweep_id, _ = render_file(settings, tmp_path, seeds="[1, 2]")
    a, b = (pixels(j.output_path) for j in jobs_of(settings, sweep_id))
    assert np.abs(a - b).max() > 10


def test_a_seed_rendered_in_a_batch_is_within_one_level_of_the_same_seed_alone(settings, tiny_model, tmp_path):
    batched, _ = render_file(settings, tmp_path, seeds="[1, 2, 3, 4]", batch_size=4, name="a.toml")
    alone, _ = render_file(settings, tmp_path, seeds="[3]", batch_size=1, name="b.toml")
    in_batch = pixels(jobs_of(settings, batched)[2].output_path)
    single = pixels(jobs_of(settings, alone)[0].output_path)
    assert np.abs(in_batch - single).max() <= 1


def test_the_png_carries_parameters_that_agree_with_the_database_row(settings, tiny_model, tmp_path):
    sweep_id, _ = render_file(settings, tmp_path, seeds="[7]", sampler="DPM++ 2M Karras")
    job = jobs_of(settings, sweep_id)[0]
    chunks = read_png_text(Path(job.output_path).read_bytes())
    info = parse_infotext(chunks["parameters"])
    assert generation_from_infotext(info).spec.replace(model=job.model) == job.spec()
    assert info.params["Sampler"] == "DPM++ 2M" and info.params["Schedule type"] == "Karras"
    ours = json.loads(chunks["sdfarm"])
    assert (ours["job_id"], ours["sweep_id"], ours["key"]) == (job.id, sweep_id, job.key)


def test_rendering_a_batch_twice_skips_what_is_done(settings, tiny_model, tmp_path):
    sweep_id, _ = render_file(settings, tmp_path, seeds="[1, 2]")
    ids = [j.id for j in jobs_of(settings, sweep_id)]
    outcome = render_batch(ids, settings)
    assert outcome.done == [] and outcome.skipped == ids
    assert all(j.attempts == 1 for j in jobs_of(settings, sweep_id))


class _FailOnSeed(FakeRenderer):
    """A renderer that breaks for one seed, as a corrupt input would."""

    def render(self, specs, **kw):
        if any(s.seed == 13 for s in specs):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().render(specs, **kw)


def test_a_failing_pass_fails_its_jobs_with_the_error_and_the_rest_go_on(settings, tmp_path):
    path = write_job(tmp_path, JOB.format(seeds="[11, 12, 13, 14]", batch_size=2, sampler="Euler"))
    sweep_id = record(settings, load_plan(settings, path))
    renderer = _FailOnSeed(0)
    outcomes = [render_batch([j.id for j in jobs_of(settings, sweep_id) if j.batch_index == b],
                             settings, renderer=renderer) for b in (0, 1)]
    jobs = jobs_of(settings, sweep_id)
    assert [j.status for j in jobs] == [JobStatus.done, JobStatus.done, JobStatus.failed, JobStatus.failed]
    assert jobs[2].error.startswith("RuntimeError: CUDA error: an illegal memory access")
    assert outcomes[1].failed == [jobs[2].id, jobs[3].id]


def _cancel_soon(settings, job_id, after: float) -> threading.Thread:
    def cancel():
        time.sleep(after)
        with session_factory(settings.database_url).begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.canceled))
    t = threading.Thread(target=cancel)
    t.start()
    return t


def test_canceling_a_running_image_stops_its_pass_within_a_step_and_the_others_finish(settings, tmp_path):
    path = write_job(tmp_path, JOB.format(seeds="[1, 2]", batch_size=2, sampler="Euler").replace("steps = 4", "steps = 20"))
    sweep_id = record(settings, load_plan(settings, path))
    first, second = jobs_of(settings, sweep_id)
    steps_seen = []

    class Counting(FakeRenderer):
        def render(self, specs, *, on_step, **kw):
            def counted():
                steps_seen.append(len(specs))
                on_step()
            return super().render(specs, on_step=counted, **kw)

    # Both the pass and the cancel stretch with the machine's load, so the cancel still lands
    # mid-pass and the steps it takes to stop are still counted in steps of this pass.
    canceler = _cancel_soon(settings, second.id, after=deadline(0.3))
    outcome = render_batch([first.id, second.id], settings, renderer=Counting(deadline(0.5)))
    canceler.join()
    assert outcome.canceled == [second.id] and outcome.done == [first.id]
    interrupted = [n for n in steps_seen if n == 2]
    # 20 steps of 0.05 s for a pass of two (on an idle machine): canceled after 0.3 s, it
    # stopped long before 20.
    assert 0 < len(interrupted) < 16
    first, second = jobs_of(settings, sweep_id)
    assert first.status == JobStatus.done and Path(first.output_path).is_file()
    assert second.status == JobStatus.canceled and not Path(second.output_path).exists()


def test_a_cancel_raised_inside_the_diffusers_pipeline_leaves_it_reusable(settings, tiny_model, tmp_path):
    body = JOB.format(seeds="[5, 6]", batch_size=2, sampler="Euler a").replace("steps = 4", "steps = 200")
    sweep_id = record(settings, load_plan(settings, write_job(tmp_path, body)))
    first, second = jobs_of(settings, sweep_id)
    canceler = _cancel_soon(settings, second.id, after=deadline(1.0))
    outcome = render_batch([first.id, second.id], settings)
    canceler.join()
    assert outcome.canceled == [second.id] and outcome.done == [first.id]
    # The job left in the pass was rendered again alone, by the same pipeline reused after the
    # exception: exactly what a fresh render of that seed alone gives.
    alone_body = body.replace("[5, 6]", "[5]").replace("batch_size = 2", "batch_size = 1")
    alone_id = record(settings, load_plan(settings, write_job(tmp_path, alone_body, "alone.toml")),
                      force=True)  # a fresh render, not the resumed image of the same key
    render_sweep_locally(settings, alone_id)
    again = jobs_of(settings, sweep_id)[0]
    assert again.pass_size == 1
    assert np.array_equal(pixels(again.output_path), pixels(jobs_of(settings, alone_id)[0].output_path))


def test_a_sweep_row_keeps_the_job_file_text_and_folder(settings, tiny_model, tmp_path):
    sweep_id, _ = render_file(settings, tmp_path, seeds="[1]")
    with session_factory(settings.database_url)() as s:
        sweep = s.get(Sweep, sweep_id)
        assert 'prompt = "a cat"' in sweep.job_file_text
        assert Path(sweep.output_dir) == settings.output_dir / f"cats-{sweep_id}"


def test_clip_skip_uses_a1111_numbering_and_changes_the_image(settings, tiny_model):
    import torch

    from sdfarm.spec import RenderSpec
    from sdfarm.worker.batch import process_renderer
    from sdfarm.worker.prompt_encoder import encode_prompts

    renderer = process_renderer(settings)
    pipe, _ = renderer.pipeline("builtin:tiny", None, False)
    # CLIP skip 1 is the text encoder's normal output, exactly what the pipeline encodes.
    ours = encode_prompts(pipe, "sd1", ["a cat"], [""], 1)["prompt_embeds"]
    theirs, _ = pipe.encode_prompt("a cat", "cpu", 1, False)
    assert torch.equal(ours, theirs)
    base = RenderSpec(model="builtin:tiny", prompt="a cat", seed=3, steps=4, width=64, height=64)
    images = [np.asarray(renderer.render([base.replace(clip_skip=n)], model_config=None,
                                         allow_pickle=False, on_step=lambda: None)[0], dtype=np.int16)
              for n in (1, 2)]
    assert np.abs(images[0] - images[1]).max() > 0


class _SlowToLoad(FakeRenderer):
    """Spends ``LOAD`` seconds loading a model on its first pass, and accounts for it as the
    real renderer does."""

    LOAD = deadline(0.6)

    def __init__(self) -> None:
        super().__init__(0)
        self.load_seconds = 0.0

    def render(self, specs, **kw):
        if self.load_seconds == 0:
            time.sleep(self.LOAD)
            self.load_seconds += self.LOAD
        return super().render(specs, **kw)


def test_render_seconds_leave_out_the_time_spent_loading_the_model(settings, tmp_path):
    path = write_job(tmp_path, JOB.format(seeds="[1, 2]", batch_size=1, sampler="Euler"))
    sweep_id = record(settings, load_plan(settings, path))
    renderer = _SlowToLoad()
    for job in jobs_of(settings, sweep_id):
        render_batch([job.id], settings, renderer=renderer)
    first, second = jobs_of(settings, sweep_id)
    # The first pass took LOAD (0.6 s on an idle machine) more wall time; the plan's s/step
    # estimate must not inherit a one-off model load.
    short = _SlowToLoad.LOAD / 2
    assert 0 <= first.render_seconds < short and 0 <= second.render_seconds < short
