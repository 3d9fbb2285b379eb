"""The database: the source of truth for sweeps, jobs and the queue."""
