"""``sdfarm serve``: the farm in a browser (sweeps, grids, history, jobs, workers, submit) and
the same data as JSON under ``/api`` for scripts. Pages call the use-cases the CLI calls."""
