"""The live progress display of a local render: images done/total, it/s and ETA."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _StepRate(ProgressColumn):
    """Denoising steps of the running pass per second: A1111's and diffusers' it/s (a pass of
    four images at 10 it/s makes 40 image-steps per second)."""

    def render(self, task) -> Text:
        rate = task.fields.get("it_per_s")
        return Text(f"{rate:.2f} it/s" if rate else "-- it/s", style="progress.data.speed")


class RenderProgress:
    """A ProgressSink for ``render_batch`` drawing a rich bar; advances by denoising steps so
    the ETA moves smoothly, and shows images done/total beside it."""

    def __init__(self, images: int, steps_per_image: float, console: Console | None = None) -> None:
        self.images = images
        self.steps_per_image = steps_per_image
        self.done = self.failed = self.canceled = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[images]}"), _StepRate(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=console or Console(stderr=True),
        )
        self._task = self._progress.add_task("loading model", total=images * steps_per_image,
                                             images=self._images_text(), it_per_s=None)
        self._first_step: float | None = None
        self._pass_steps = 0

    def _images_text(self) -> str:
        extra = f", {self.failed} failed" if self.failed else ""
        extra += f", {self.canceled} canceled" if self.canceled else ""
        return f"{self.done}/{self.images} images{extra}"

    def __enter__(self) -> RenderProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def step(self, images: int) -> None:
        now = time.monotonic()
        if self._first_step is None:
            self._first_step = now
            self._progress.update(self._task, description="rendering")
        self._pass_steps += 1
        elapsed = now - self._first_step
        # Each image of the pass advanced one step: the bar counts image-steps, for the ETA.
        # Steps between the first one and now: the first step's own time is unknown.
        rate = (self._pass_steps - 1) / elapsed if self._pass_steps > 2 and elapsed > 0 else None
        self._progress.update(self._task, advance=images, it_per_s=rate)

    def finished(self, done: int = 0, failed: int = 0, canceled: int = 0) -> None:
        self.done += done
        self.failed += failed
        self.canceled += canceled
        # Failed and canceled images never finish their steps: count their remainder as
        # advanced so the bar still ends at 100%.
        completed = (self.done + self.failed + self.canceled) * self.steps_per_image
        task = self._progress.tasks[0]
        self._progress.update(self._task, completed=max(task.completed, completed),
                              images=self._images_text())
