"""Datasets in the formats trainers read, written from a run directory through its reader.

- :mod:`~condor.export.formats`: records to rows (chat ``messages``, TRL preference pairs, ShareGPT,
  Alpaca, the flat row of Parquet and ``datasets`` files);
- :mod:`~condor.export.dataset`: the run's own files (``sft.jsonl``, ``preference.jsonl``, ``rejected.jsonl``);
- :mod:`~condor.export.build`: ``condor export --format`` (filters, split, writers, push to the Hub);
- :mod:`~condor.export.judged`: DPO pairs checked by the judge in both orders, labelled critique records;
- :mod:`~condor.export.selection`: filters and the train/test split by leaf;
- :mod:`~condor.export.card`: the dataset card (``README.md``).

Nothing here needs a backend.
"""
