"""RenderSpec keys, ordering and batching, and the purity of the planning core."""

from __future__ import annotations

import subprocess
import sys

from sdfarm.scheduler.batching import make_batches, order_specs
from sdfarm.scheduler.jobfile import parse_job_file
from sdfarm.scheduler.plan import make_plan
from sdfarm.spec import RenderSpec

BASE = RenderSpec(model="builtin:tiny", prompt="a cat", seed=1, width=64, height=64)


def test_the_key_changes_with_every_pixel_determining_parameter():
    changes = dict(model="other", prompt="a dog", seed=2, negative_prompt="x", sampler="DDIM",
                   steps=21, cfg=7.5, width=128, height=128, clip_skip=2, model_hash="0123456789")
    keys = {BASE.key} | {BASE.replace(**{k: v}).key for k, v in changes.items()}
    assert len(keys) == len(changes) + 1


def test_two_paths_to_the_same_weights_share_a_key_once_the_hash_is_known():
    a = BASE.replace(model="/models/a.safetensors", model_hash="0123456789")
    b = BASE.replace(model="/other/link.safetensors", model_hash="0123456789")
    assert a.key == b.key
    assert a.replace(model_hash=None).key != b.replace(model_hash=None).key


def test_cfg_written_as_int_or_float_is_the_same_key():
    assert BASE.replace(cfg=7).key == BASE.replace(cfg=7.0).key


def test_specs_are_ordered_model_outermost_and_stably():
    specs = [BASE.replace(model="m2", seed=1), BASE.replace(model="m1", seed=2),
             BASE.replace(model="m2", seed=3), BASE.replace(model="m1", seed=4)]
    assert [specs[i].seed for i in order_specs(specs)] == [2, 4, 1, 3]


def test_batches_hold_specs_differing_only_in_prompt_and_seed_up_to_batch_size():
    specs = [BASE.replace(seed=s) for s in range(5)] + [BASE.replace(seed=9, steps=30)]
    batches = make_batches(specs, range(len(specs)), 2)
    assert batches == [[0, 1], [2, 3], [4], [5]]


def test_a_seed_sweep_plans_one_image_per_seed_in_batches():
    job = parse_job_file('model = "builtin:tiny"\nprompt = "p"\nsteps = 5\nseeds = "1-10"\n', "t.toml")
    plan = make_plan(job, model_hash="0123456789")
    assert plan.images == 10 and plan.total_steps == 50
    assert [len(b) for b in plan.batches] == [4, 4, 2]
    assert [s.seed for s in plan.specs] == list(range(1, 11))
    assert all(s.model_hash == "0123456789" for s in plan.specs)


def test_planning_a_grid_imports_no_torch_celery_or_sqlalchemy():
    code = (
        "import sys\n"
        "import sdfarm.spec, sdfarm.samplers, sdfarm.metadata.a1111, sdfarm.modelref\n"
        "import sdfarm.scheduler.jobfile, sdfarm.scheduler.seeds, sdfarm.scheduler.expand\n"
        "import sdfarm.scheduler.batching, sdfarm.scheduler.plan, sdfarm.scheduler.prepare\n"
        "import sdfarm.scheduler.rerun, sdfarm.scheduler.axes, sdfarm.scheduler.prompts\n"
        "import sdfarm.scheduler.forecast, sdfarm.files\n"
        "from sdfarm.scheduler.jobfile import parse_job_file\n"
        "from sdfarm.scheduler.plan import make_plan\n"
        "job = parse_job_file('model = \"m\"\\nprompt = \"a {red|blue} cat\"\\n[axes]\\n'\n"
        "                     'x = { cfg = \"4-12 (+2)\" }\\ny = { sampler = \"Euler, DDIM\" }\\n', 'g.toml')\n"
        "assert make_plan(job).images == 20\n"
        "bad = [m for m in ('torch', 'celery', 'sqlalchemy', 'diffusers') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
