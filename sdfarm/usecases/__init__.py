"""Use-cases: what a user asks sdfarm to do (render a job file here, submit it to the farm,
render a job again), as plain functions over ``scheduler``, ``db``, ``broker``, ``worker`` and
``grids``. The CLI (and a web page) calls these and only parses options and prints."""
