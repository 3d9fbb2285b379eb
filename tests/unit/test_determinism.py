"""Planning is deterministic across processes: the same job file planned in two fresh Python
processes with different string-hash seeds (PYTHONHASHSEED) gives the same random seeds, the
same randomly drawn prompts (variants and wildcards) and the same job keys, so a sweep planned
again on another machine, or by a worker, resumes instead of rendering again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_job

REPO = Path(__file__).resolve().parents[2]

JOB = '''\
model = "builtin:tiny"
prompt = "a {red|green|blue} __animal__ in a {field|forest|__place__}"
negative_prompt = "{blurry|grainy}"
width = 64
height = 64
steps = 4
seeds = { random = 4 }
prompts = { random = 3 }

[axes]
x = { cfg = [5, 7] }
'''

PLAN = '''\
import json, sys
from pathlib import Path
from sdfarm.config import Settings
from sdfarm.usecases.render import load_plan

folder = Path(sys.argv[1])
settings = Settings(database_url=f"sqlite:///{folder / 'unused.db'}", output_dir=folder / "out",
                    model_dir=folder / "models", device="cpu", threads=1)
plan = load_plan(settings, folder / "job.toml")
print(json.dumps({
    "sweep_seed": plan.job.sweep_seed,
    "seeds": list(plan.seeds),
    "prompts": [list(p) for p in plan.prompts],
    "images": [[s.prompt, s.negative_prompt, s.seed, s.cfg] for s in plan.specs],
    "keys": list(plan.key_list()),
    "batches": [list(b) for b in plan.batches],
}))
'''


def plan_in_a_fresh_process(folder: Path, hash_seed: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDFARM_")}
    # This checkout's sdfarm (not an installed one), also from a clean clone in CI.
    env.update(PYTHONPATH=str(REPO), PYTHONHASHSEED=hash_seed)
    out = subprocess.run([sys.executable, "-c", PLAN, str(folder)], env=env, cwd=folder,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_two_processes_with_different_hash_seeds_plan_the_same_seeds_prompts_and_keys(tmp_path):
    wildcards = tmp_path / "wildcards"
    wildcards.mkdir()
    (wildcards / "animal.txt").write_text("owl\ncat\nfox\nheron\nlynx\n", encoding="utf-8")
    (wildcards / "place.txt").write_text("meadow\n__animal__ den\nmarsh\n", encoding="utf-8")
    write_job(tmp_path, JOB)

    first = plan_in_a_fresh_process(tmp_path, "0")
    second = plan_in_a_fresh_process(tmp_path, "12345")

    # The plan is what the file asks for: 3 drawn prompts x 2 cfg x 4 random seeds
    assert len(first["seeds"]) == 4 and len(set(first["seeds"])) == 4
    assert len(first["prompts"]) == 3
    assert all("{" not in p and "__" not in p for pair in first["prompts"] for p in pair)
    assert len(first["images"]) == 24 and len(set(first["keys"])) == 24
    # And both processes planned exactly the same sweep
    for part in ("sweep_seed", "seeds", "prompts", "images", "keys", "batches"):
        assert first[part] == second[part], f"{part} differ between PYTHONHASHSEED=0 and 12345"
