"""Datasets in the formats trainers read, written from a run directory through its reader.

:mod:`~condor.export.formats` turns records into rows (chat ``messages`` for SFT, TRL's preference
format for DPO); :mod:`~condor.export.dataset` writes the files. Nothing here needs a backend.
"""
