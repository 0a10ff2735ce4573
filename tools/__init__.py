"""Experiment tooling shared by ``recipes/Folder/SpeakerRec/compare.py`` and
``benchmarks/``: a stage runner over recipe command lines, corpus splits by speaker,
untrained baselines, result tables. Not part of the library; the scripts that use it
put the repository root on ``sys.path``."""
