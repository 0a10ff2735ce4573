#!/usr/bin/env python3
"""MoCo speaker embeddings on CN-Celeb (no speaker labels used for training).

Run::

    python recipes/CNCeleb/MoCo/train_moco.py recipes/CNCeleb/MoCo/hparams/moco.yaml \
        --data_folder=/data/CN-Celeb_flac \
        --extra_sources="[{data_folder: /data/CN-Celeb2_flac, name: cnceleb2}]"

Trains on CN-Celeb1 ``data/`` minus the evaluation speakers (plus CN-Celeb2 as an
extra source), and scores ``eval/lists/trials.lst`` at the end. The Brain, pipelines
and evaluation are the library's (``speechbrain_moco.recipe``).
"""

import sys

from speechbrain_moco.recipe import run_moco, summary

if __name__ == "__main__":
    _, metrics, baseline = run_moco(sys.argv[1:])
    if metrics is not None:
        print(summary(metrics, baseline))
