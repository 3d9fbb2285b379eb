"""Planning (pure: job file -> RenderSpecs -> ordered batches) and dispatch (DB + executors)."""
