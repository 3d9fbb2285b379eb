"""One rooted family of errors, each with a message a user can act on.

They become ``click.ClickException`` only at the CLI edge; everything below raises these.
"""

from __future__ import annotations

import re


class SdfarmError(Exception):
    """Base of every error sdfarm raises on purpose."""


class JobFileError(SdfarmError):
    """A job file is unreadable or invalid. The message names the file, the key and what is allowed."""

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class ModelError(SdfarmError):
    """A model reference cannot be resolved or loaded."""


class FamilyUnknown(ModelError):
    """A model's family cannot be read from its files (a pickle, a hub model not downloaded):
    a job file's ``family =`` settles it."""


class SamplerError(SdfarmError):
    """An unknown sampler name."""


class JobNotFound(SdfarmError):
    """No job with that id."""


class SweepNotFound(SdfarmError):
    """No sweep with that id."""


class RenderCanceled(SdfarmError):
    """Raised from the denoising callback when a job of the running pass was canceled."""


class ImageFailed(SdfarmError):
    """One image of a pass came out unusable (all NaN, say). A renderer returns it in that
    image's place: its job fails with this message, the pass's other images are recorded."""


class DiskFault(SdfarmError):
    """Writing failed for a reason of this machine's disk (full, over quota, read-only, an I/O
    error), not of the job: its jobs go back to the queue without counting an attempt, and a
    farm worker pauses until ``folder`` takes writes again instead of failing the queue.

    ``errno_name`` is ``ENOSPC``, ``EDQUOT``, ``EROFS`` or ``EIO``; ``needed`` is how many bytes
    the write that failed wanted (what the probe writes before a worker resumes)."""

    #: What each fault's errno means to a user.
    REASONS = {"ENOSPC": "disk full", "EDQUOT": "disk quota exceeded",
               "EROFS": "read-only file system", "EIO": "disk I/O error"}

    def __init__(self, folder: str, errno_name: str, detail: str, *, needed: int = 0,
                 what: str = "images",
                 advice: str = "the images written are recorded; free space there (or fix "
                               "the disk) and render again for the rest") -> None:
        self.folder, self.errno_name, self.needed = folder, errno_name, needed
        reason = self.REASONS.get(errno_name, errno_name)
        super().__init__(f"cannot write {what} to {folder}: {reason} ({errno_name}: "
                         f"{detail}); {advice}")

    @property
    def reason(self) -> str:
        return self.REASONS.get(self.errno_name, self.errno_name)


class BrokerUnavailable(SdfarmError):
    """The farm's broker (Redis) cannot be reached. What the database holds is safe:
    ``sdfarm recover`` sends the queued jobs once it is back."""


class ImageMetadataError(SdfarmError):
    """An image's file or embedded generation parameters cannot be read (``sdfarm index``
    reports it and goes on)."""


class HistoryQueryError(SdfarmError):
    """A history search or ``rerun --set`` value that cannot be understood."""


class BadFilter(HistoryQueryError):
    """A history filter's value (``cfg=6-x``, ``since=yesterday``): the message names the
    filter and the forms allowed; ``problem`` is the same without the filter's name."""

    def __init__(self, name: str, problem: str) -> None:
        self.name, self.problem = name, problem
        super().__init__(f"{name}: {problem}")


def one_line(exc: BaseException, *, named: bool = True, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message (with its type name when ``named``),
    cut to ``limit`` characters: what a job's error column and a CLI error show."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if named and lines:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Longest quoted value an error message echoes whole.
ECHO_LIMIT = 80
#: A quoted value as repr() writes one: the opening quote not after a word character (so the
#: closing quote of one value and the opening of the next are never taken for a pair).
_QUOTED = re.compile(r"""(?<![\w'"])(?:'(?:[^'\\]|\\.){%d,}'|"(?:[^"\\]|\\.){%d,}")(?!\w)"""
                     % (ECHO_LIMIT + 1, ECHO_LIMIT + 1))


def clip_echoes(message: str) -> str:
    """``message`` with every quoted value longer than :data:`ECHO_LIMIT` characters cut to
    its start and its length: a 100 kB value in a job file must not become a 100 kB error
    line."""
    def cut(match: re.Match[str]) -> str:
        quoted = match.group(0)
        return f"{quoted[:ECHO_LIMIT]}…{quoted[0]} ({len(quoted) - 2:,} characters)"

    return _QUOTED.sub(cut, message)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a command that renders here. A KeyboardInterrupt, so that
    everything which gives jobs back on Ctrl+C does so for SIGTERM too."""

    def __init__(self, signal_name: str, signal_number: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.signal_number = signal_number
