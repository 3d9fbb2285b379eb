"""Progress in a log file: a line at the start, every 30 s, at each tenth, and at the end."""

from __future__ import annotations

from sdfarm.cli.progresslog import ProgressLog, RenderProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_line_at_the_start_and_at_each_tenth_not_at_every_image():
    lines: list[str] = []
    clock = Clock()
    log = ProgressLog("sweep 3", 100, lines.append, clock=clock)
    for done in range(101):
        clock.now += 1
        log.update(done)
    assert len(lines) == 11  # 0, 10, 20 … 100
    assert lines[0].startswith("sweep 3: 0/100 finished")
    assert lines[-1].startswith("sweep 3: 100/100 finished (100 done, 0 failed, 0 canceled)")


def test_a_slow_render_still_prints_every_30_seconds_with_rate_and_eta():
    lines: list[str] = []
    clock = Clock()
    log = ProgressLog("sweep 3", 1000, lines.append, clock=clock)
    log.update(0)
    for _ in range(3):  # 5 images a minute: no tenth crossed, but a line every 30 s
        clock.now += 15
        log.update(0 if not lines else len(lines))
        clock.now += 15
        log.update(len(lines), failed=1)
    assert len(lines) == 4
    assert "1 failed" in lines[-1] and "images/min" in lines[-1] and "ETA" in lines[-1]
    assert "ETA --:--" not in lines[-1]


def test_rate_and_eta_as_given_by_the_farm():
    lines: list[str] = []
    log = ProgressLog("sweep 9", 10, lines.append, clock=Clock())
    log.update(2, failed=1, canceled=1, per_minute=12.0, eta_seconds=3725)
    assert lines == ["sweep 9: 4/10 finished (2 done, 1 failed, 1 canceled), 12.0 images/min, "
                     "ETA 1:02:05"]


def test_the_end_is_said_once():
    lines: list[str] = []
    with RenderProgressLog("sweep 1", 2, lines.append, clock=Clock()) as sink:
        sink.step(2)
        sink.finished(done=2)
    assert [line.split(",")[0] for line in lines] == ["sweep 1: 0/2 finished (0 done",
                                                      "sweep 1: 2/2 finished (2 done"]
