#!/usr/bin/env python3
"""MoCo speaker embeddings on LibriSpeech (no speaker labels used for training).

Run::

    python recipes/LibriSpeech/MoCo/train_moco.py recipes/LibriSpeech/MoCo/hparams/moco.yaml \
        --data_folder=/data/LibriSpeech

Trains on ``subsets`` (default train-clean-100) and scores, at the end, a trial list
generated with a fixed seed on ``trial_subsets`` speakers (default test-clean). The
Brain, pipelines and evaluation are the library's (``speechbrain_moco.recipe``).
"""

import sys

from speechbrain_moco.recipe import run_moco, summary

if __name__ == "__main__":
    _, metrics, baseline = run_moco(sys.argv[1:])
    if metrics is not None:
        print(summary(metrics, baseline))
