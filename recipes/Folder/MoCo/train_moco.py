#!/usr/bin/env python3
"""MoCo speaker-embedding training on any folder corpus, then cosine scoring.

Run (embedded synthetic corpus when --data_folder is not given)::

    python recipes/Folder/MoCo/train_moco.py recipes/Folder/MoCo/hparams/moco.yaml \
        --data_folder=ROOT --output_folder=OUT [--verification_file=TRIALS]

Multi-process: ``torchrun --nproc_per_node=N recipes/Folder/MoCo/train_moco.py ...``.
The Brain, the two-crop pipeline and the evaluation live in ``speechbrain_moco``;
see ``speechbrain_moco.recipe.run_moco`` for the steps.
"""

import sys

from speechbrain_moco.recipe import run_moco, summary

if __name__ == "__main__":
    _, metrics, baseline = run_moco(sys.argv[1:])
    if metrics is not None:
        print(summary(metrics, baseline))
