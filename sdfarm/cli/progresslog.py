"""Progress for a log file: when the output is not a terminal (``sdfarm watch 7 > log``, a
render under nohup or systemd), one plain line at a steady interval and at each tenth of the
way, instead of a live bar that a file shows as nothing until the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Seconds between two lines at most while anything is left (a slow model still says it lives).
LINE_EVERY_SECONDS = 30.0


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


class ProgressLog:
    """Decides when a progress line is due and writes it: at the start, every
    ``every`` seconds, whenever another tenth of the images is finished, and at the end."""

    def __init__(self, label: str, total: int, write: Callable[[str], None], *,
                 every: float = LINE_EVERY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.write = label, total, write
        self.every, self.clock = every, clock
        self.started = clock()
        self._last_line: float | None = None
        self._last_tenth = -1
        self._last_counts: tuple[int, int, int] | None = None
        self._lock = threading.Lock()  # a render reports from its writer thread too

    def update(self, done: int, failed: int = 0, canceled: int = 0,
               per_minute: float | None = None, eta_seconds: float | None = None,
               *, final: bool = False) -> bool:
        """Report the counts now; writes a line when one is due. ``per_minute`` and
        ``eta_seconds`` default to the rate since this log started. Returns whether it wrote."""
        with self._lock:
            now = self.clock()
            finished = done + failed + canceled
            tenth = finished * 10 // self.total if self.total else 10
            counts = (done, failed, canceled)
            due = (self._last_line is None or tenth > self._last_tenth
                   or now - self._last_line >= self.every
                   or (final and counts != self._last_counts))
            if not due:
                return False
            if per_minute is None:
                elapsed = now - self.started
                per_minute = finished / elapsed * 60 if elapsed > 0 else 0.0
            left = self.total - finished
            if eta_seconds is None:
                eta_seconds = left / per_minute * 60 if per_minute > 0 else (0.0 if not left else None)
            self._last_line, self._last_tenth, self._last_counts = now, tenth, counts
            self.write(f"{self.label}: {finished}/{self.total} finished ({done} done, "
                       f"{failed} failed, {canceled} canceled), {per_minute:.1f} images/min, "
                       f"ETA {format_eta(eta_seconds)}")
            return True


class RenderProgressLog:
    """The ProgressSink of ``sdfarm render`` when stderr is not a terminal."""

    def __init__(self, label: str, images: int, write: Callable[[str], None], **kw) -> None:
        self.log = ProgressLog(label, images, write, **kw)
        self.done = self.failed = self.canceled = 0
        self.log.update(0)

    def __enter__(self) -> RenderProgressLog:
        return self

    def __exit__(self, *exc) -> None:
        self.log.update(self.done, self.failed, self.canceled, final=True)

    def step(self, images: int) -> None:
        # Steps come often: they let a long pass still print its line on time.
        self.log.update(self.done, self.failed, self.canceled)

    def finished(self, done: int = 0, failed: int = 0, canceled: int = 0) -> None:
        self.done += done
        self.failed += failed
        self.canceled += canceled
        self.log.update(self.done, self.failed, self.canceled)
