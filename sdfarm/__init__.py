"""sdfarm: a batch-rendering queue for Stable Diffusion.

A job file expands into one RenderSpec per image; each is recorded as a Job row, rendered by
``sdfarm.worker.batch.render_batch`` (in-process or on Celery workers) and found again later
through the history queries.
"""

__version__ = "0.1.0"
