"""``sdfarm watch SWEEP > log`` and ``sdfarm render FILE 2> log``: progress a log file shows
while the sweep runs (a line at each tenth and every 30 s), not one line at the end."""

from __future__ import annotations

import re

from tests.conftest import write_job
from tests.farm.conftest import Farm

JOB = """
name = "logged"
model = "builtin:tiny"
prompt = "a lighthouse"
seeds = "1-20"
steps = 2
width = 64
height = 64
batch_size = 1
"""

LINE = re.compile(r"^sweep (\d+): (\d+)/20 finished \((\d+) done, 0 failed, 0 canceled\), "
                  r"[\d.]+ images/min, ETA [\d:-]+$")


def _progress(text: str) -> list[int]:
    """The finished counts of the progress lines, in order."""
    return [int(m.group(2)) for m in map(LINE.match, text.splitlines()) if m]


def _rises_in_tenths(finished: list[int]) -> None:
    assert finished == sorted(finished) and finished[0] < 20 and finished[-1] == 20, finished
    assert len(finished) >= 5, finished  # 20 images: a line per tenth crossed, at least 5


def test_watch_into_a_log_prints_progress_lines_while_the_sweep_runs(farm: Farm, tmp_path):
    sweep_id = int(farm.sdfarm("submit", write_job(tmp_path, JOB)).stdout)
    farm.start_worker("w1", SDFARM_RENDERER="fake:0.1")
    watched = farm.sdfarm("watch", sweep_id, "--interval", "0.1")  # stdout is a pipe
    _rises_in_tenths(_progress(watched.stdout))
    assert watched.stdout.rstrip().endswith(f"sweep {sweep_id}: 20/20 done, 0 failed, 0 canceled")


def test_render_into_a_log_prints_progress_lines(farm: Farm, tmp_path):
    rendered = farm.sdfarm("render", write_job(tmp_path, JOB), SDFARM_RENDERER="fake:0.05")
    _rises_in_tenths(_progress(rendered.stderr))  # stderr is a pipe: no live bar
    assert "\r" not in rendered.stderr and "━" not in rendered.stderr
