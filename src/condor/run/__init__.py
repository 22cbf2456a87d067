"""Running pipelines: steps as data, executors, the run directory and its reader.

- :mod:`~condor.run.steps`: the step objects (model, gate, source) a pipeline is a list of;
- :mod:`~condor.run.pipeline`: ``build_steps``, the default Condor pipeline for a run's settings;
- :mod:`~condor.run.orchestrate`: runs a step list over a run directory, skipping finished steps;
- :mod:`~condor.run.executor` / :mod:`~condor.run.local`: the executor interface and the asyncio one;
- :mod:`~condor.run.recovery` / :mod:`~condor.run.batching`: the shared recovery ladder, batching;
- :mod:`~condor.run.store` / :mod:`~condor.run.lock`: the write side of a run directory;
- :mod:`~condor.run.records`: the read side, which needs no backend;
- :mod:`~condor.run.plan`, :mod:`~condor.run.importer`, :mod:`~condor.run.batch`: work items,
  imported datasets and ``condor generate``.

Nothing here imports the CLI; backends are opened by :mod:`condor.llm.registry`.
"""
