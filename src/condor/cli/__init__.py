"""The ``condor`` command: one typer module per command group, each a thin call into the Python API."""
