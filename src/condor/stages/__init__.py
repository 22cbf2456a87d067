"""Pipeline stages: pure request builders and parsers (see :mod:`condor.stages.base`)."""

from condor.stages.base import ParseError, Record, Rejection, Stage

__all__ = ["ParseError", "Record", "Rejection", "Stage"]
