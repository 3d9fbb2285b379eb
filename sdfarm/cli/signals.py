"""SIGINT and SIGTERM as an exception in a command that renders here, so that it can say what
it did with its jobs before it exits (SIGTERM's default is to die without a word)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from sdfarm.errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: the first SIGINT or SIGTERM raises :class:`Interrupted` in the main thread. A
    second one acts as it would without this (Ctrl+C twice stops the clean-up too)."""
    previous = {s: signal.getsignal(s) for s in _SIGNALS}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    def stop(number: int, frame) -> None:
        restore()
        raise Interrupted(signal.Signals(number).name, number)

    for number in _SIGNALS:
        signal.signal(number, stop)
    try:
        yield
    finally:
        restore()
