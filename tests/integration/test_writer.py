"""The pass writer: each pass's images are written and recorded on a thread beside the render,
and what the database says stays what is on the disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus
from sdfarm.errors import ImageFailed
from sdfarm.metadata.chunks import read_png_text
from sdfarm.metadata.generation import generation_from_infotext
from sdfarm.metadata.infotext import parse_infotext
from sdfarm.usecases.local import render_sweep_locally
from sdfarm.usecases.record import record
from sdfarm.usecases.render import load_plan
from sdfarm.worker.batch import render_batch
from sdfarm.worker.render import FakeRenderer, to_images
from sdfarm.worker.solo import WorkerStopping
from tests.conftest import deadline, write_job
from tests.integration.test_render import JOB, jobs_of


def recorded(settings, seeds: str, batch_size: int, steps: int = 4) -> tuple[int, list[Job]]:
    body = JOB.format(seeds=seeds, batch_size=batch_size, sampler="Euler")
    body = body.replace("steps = 4", f"steps = {steps}")
    sweep_id = record(settings, load_plan(settings, write_job(settings.output_dir.parent, body)))
    return sweep_id, jobs_of(settings, sweep_id)


def test_a_multi_pass_batch_records_every_image_with_its_file_in_order(settings, tiny_model):
    # Given a sweep of three passes of two images, rendered by the real tiny model in one call
    sweep_id, jobs = recorded(settings, "[1, 2, 3, 4, 5, 6]", batch_size=2)
    seen = []

    class Progress:
        def step(self, images):
            pass

        def finished(self, done=0, failed=0, canceled=0):
            # Reported once recorded: the database already says so.
            with session_factory(settings.database_url)() as s:
                recorded_done = s.query(Job).filter(Job.status == JobStatus.done).count()
            seen.append((done, recorded_done))

    # When
    outcome = render_batch([j.id for j in jobs], settings, progress=Progress())
    # Then every job is done, in render order, its file present with its parameters
    assert outcome.done == [j.id for j in jobs] and outcome.failed == []
    assert seen == [(2, 2), (2, 4), (2, 6)]
    for job in jobs_of(settings, sweep_id):
        assert job.status == JobStatus.done and Path(job.output_path).is_file()
        assert (job.pass_size, job.pass_index) == (2, job.seq % 2)
        chunks = read_png_text(Path(job.output_path).read_bytes())
        info = parse_infotext(chunks["parameters"])
        assert generation_from_infotext(info).spec.replace(model=job.model) == job.spec()
        assert json.loads(chunks["sdfarm"])["job_id"] == job.id


def test_a_local_render_of_single_image_batches_records_them_all(settings, tiny_model, tmp_path):
    # Given a sweep of one-image batches (rendered as passes of one call, written behind)
    path = write_job(tmp_path, JOB.format(seeds="[1, 2, 3, 4, 5]", batch_size=1, sampler="Euler"))
    sweep_id = record(settings, load_plan(settings, path))
    # When / Then
    assert render_sweep_locally(settings, sweep_id).done == 5
    jobs = jobs_of(settings, sweep_id)
    assert all(j.status == JobStatus.done and Path(j.output_path).is_file() for j in jobs)
    assert len({j.pass_id for j in jobs}) == 5


def test_a_write_error_fails_that_images_job_alone(settings):
    # Given three passes, and a folder squatting on the file name of pass 2's second image
    sweep_id, jobs = recorded(settings, "[1, 2, 3, 4, 5, 6]", batch_size=2)
    Path(jobs[3].output_path).mkdir(parents=True)
    # When
    outcome = render_batch([j.id for j in jobs], settings, renderer=FakeRenderer(0))
    # Then that job fails with the error; the image written before it in its pass, and the
    # passes after it, are done
    jobs = jobs_of(settings, sweep_id)
    assert [j.status for j in jobs] == [JobStatus.done, JobStatus.done, JobStatus.done,
                                        JobStatus.failed, JobStatus.done, JobStatus.done]
    assert jobs[3].error.startswith("IsADirectoryError")
    assert outcome.failed == [jobs[3].id]
    assert outcome.done == [jobs[0].id, jobs[1].id, jobs[2].id, jobs[4].id, jobs[5].id]
    assert Path(jobs[2].output_path).is_file() and Path(jobs[4].output_path).is_file()
    assert (jobs[2].pass_index, jobs[2].pass_size) == (0, 2)
    assert not list(Path(jobs[0].output_path).parent.glob(".*.tmp"))


class _NanOnSeed(FakeRenderer):
    """The image of seed 13 comes out all NaN, as SDXL's VAE in float16 can make it."""

    def render(self, specs, **kw):
        images = super().render(specs, **kw)
        nan = to_images(np.full((1, 8, 8, 3), np.nan, dtype=np.float32))[0]
        return [nan if s.seed == 13 else image for s, image in zip(specs, images)]


def test_an_all_nan_image_fails_its_job_alone_with_the_reason(settings):
    # Given a pass of four whose third image comes out all NaN
    sweep_id, jobs = recorded(settings, "[11, 12, 13, 14]", batch_size=4)
    # When
    outcome = render_batch([j.id for j in jobs], settings, renderer=_NanOnSeed(0))
    # Then that job fails with the reason and has no file; its neighbours are done
    jobs = jobs_of(settings, sweep_id)
    assert [j.status for j in jobs] == [JobStatus.done, JobStatus.done, JobStatus.failed,
                                        JobStatus.done]
    assert jobs[2].error.startswith("ImageFailed: the image came out all NaN")
    assert "SDFARM_DTYPE=float32" in jobs[2].error
    assert not Path(jobs[2].output_path).exists()
    assert outcome.failed == [jobs[2].id] and len(outcome.done) == 3
    assert [j.pass_index for j in jobs if j.status == JobStatus.done] == [0, 1, 3]


def test_an_all_nan_array_becomes_an_image_failure_and_a_partly_nan_one_an_image():
    images = np.zeros((2, 8, 8, 3), dtype=np.float32)
    images[0] = np.nan
    images[1, 0, 0, 0] = np.nan
    failed, image = to_images(images)
    assert isinstance(failed, ImageFailed) and "all NaN" in str(failed)
    assert image.size == (8, 8)


class _StopsOnSecondPass(FakeRenderer):
    """Ctrl+C, or a worker's cold shutdown, arriving while the second pass renders."""

    def __init__(self, stop: type[BaseException]) -> None:
        super().__init__(0)
        self.stop, self.passes = stop, 0

    def render(self, specs, **kw):
        self.passes += 1
        if self.passes == 2:
            raise self.stop("stopping")
        return super().render(specs, **kw)


@pytest.mark.parametrize("stop", [WorkerStopping, KeyboardInterrupt])
def test_an_interrupt_still_records_what_was_rendered_and_gives_the_rest_back(settings, stop):
    # Given three passes, and an interrupt while the second renders
    sweep_id, jobs = recorded(settings, "[1, 2, 3, 4, 5, 6]", batch_size=2)
    # When
    with pytest.raises(stop):
        render_batch([j.id for j in jobs], settings, renderer=_StopsOnSecondPass(stop))
    # Then the first pass is done with its files; the others are queued again, no attempt lost
    jobs = jobs_of(settings, sweep_id)
    assert [j.status for j in jobs[:2]] == [JobStatus.done, JobStatus.done]
    assert all(Path(j.output_path).is_file() for j in jobs[:2])
    assert all(j.status == JobStatus.queued and j.attempts == 0 for j in jobs[2:])
    assert not any(Path(j.output_path).exists() for j in jobs[2:])


def test_a_job_of_a_later_pass_canceled_meanwhile_is_never_rendered(settings):
    # Given three passes, and the last pass's first job canceled while the first renders
    sweep_id, jobs = recorded(settings, "[1, 2, 3, 4, 5, 6]", batch_size=2, steps=20)
    rendered = []

    class CancelsDuringFirstPass(FakeRenderer):
        def render(self, specs, **kw):
            if not rendered:
                with session_factory(settings.database_url).begin() as s:
                    s.execute(update(Job).where(Job.id == jobs[4].id)
                              .values(status=JobStatus.canceled))
            rendered.extend(s.seed for s in specs)
            return super().render(specs, **kw)

    # When (the first pass lasts many of the pass watch's polls)
    outcome = render_batch([j.id for j in jobs], settings,
                           renderer=CancelsDuringFirstPass(deadline(0.5)))
    # Then
    assert 5 not in rendered and rendered[-1] == 6
    assert outcome.canceled == [jobs[4].id]
    assert outcome.done == [j.id for j in jobs if j.id != jobs[4].id]
    assert not Path(jobs[4].output_path).exists()
