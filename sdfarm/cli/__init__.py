"""The ``sdfarm`` command line."""
