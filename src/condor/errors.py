"""Errors that cross layers: each says what was wrong, where, and what to do.

The CLI turns these into one-line messages (exit code 2); the Python API lets them propagate.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message says where and why."""
