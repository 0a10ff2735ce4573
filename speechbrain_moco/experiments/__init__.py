"""Experiment tooling: one stage runner over the recipes' command lines (the label-free
pipeline, ``compare.py`` and the benchmarks all use it), the recipes' stages, untrained
baselines, and the evidence layer that turns scored folders over folds and seeds into
intervals and paired comparisons. The stages run the recipes of a checkout."""
