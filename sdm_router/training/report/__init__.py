"""The ``verifier evaluate`` report: metrics, estimators and baselines, results, plots, Markdown."""
