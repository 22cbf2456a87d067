"""Seeing a run: the numbers about its dataset, question diversity, and one offline HTML report.

- :mod:`~condor.report.metrics`: composition, balance, leaf coverage, rejections, tokens, lengths, gains
  (also used by the dataset card);
- :mod:`~condor.report.diversity`: embedding diversity of questions and a 2-D map (all-MiniLM-L6-v2);
- :mod:`~condor.report.charts`: small inline SVG charts;
- :mod:`~condor.report.html`: the self-contained page (``condor report``), with ``static/`` (CSS, JS).
"""
