"""One rooted family of errors, each with a message a user can act on.

They become ``click.ClickException`` only at the CLI edge; everything below raises these.
"""

from __future__ import annotations


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


class WildcardNotFound(SdfarmError):
    """A ``__name__`` wildcard has no file in the wildcard folder."""


class ModelError(SdfarmError):
    """A model reference cannot be resolved or loaded."""


class SamplerError(SdfarmError):
    """An unknown sampler name."""


class JobNotFound(SdfarmError):
    """No job with that id."""


class SweepNotFound(SdfarmError):
    """No sweep with that id."""


class RenderCanceled(SdfarmError):
    """Raised from the denoising callback when a job of the running pass was canceled."""


class BrokerUnavailable(SdfarmError):
    """The farm's broker (Redis) cannot be reached. What the database holds is safe:
    ``sdfarm recover`` sends the queued jobs once it is back."""


class ImageMetadataError(SdfarmError):
    """An image's file or embedded generation parameters cannot be read (``sdfarm index``
    reports it and goes on)."""


class HistoryQueryError(SdfarmError):
    """A history search or ``rerun --set`` value that cannot be understood."""
