"""LLM-as-judge over run directories and datasets: grades, pairwise verdicts in both orders, statistics.

- :mod:`~condor.judge.runner`: ``condor judge`` as resumable model steps (``ajudge_runs``);
- :mod:`~condor.judge.sources`: the two sides of a comparison, paired on their shared questions;
- :mod:`~condor.judge.results`: reading results back without a backend (for export and the report);
- :mod:`~condor.judge.stats`: Wilson intervals, position consistency, the length-controlled win rate.

The prompts and parsers are stages (:mod:`condor.stages.judge`, :mod:`condor.stages.pairwise`). Nothing
here imports a backend or a numerical library at import time.
"""
