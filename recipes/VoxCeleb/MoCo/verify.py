#!/usr/bin/env python3
"""Score a trial list with a trained MoCo (or supervised) encoder, cosine back-end.

Run::

    python recipes/VoxCeleb/MoCo/verify.py recipes/VoxCeleb/MoCo/hparams/verification_cosine.yaml \
        --data_folder=ROOT --verification_file=TRIALS --pretrain_path=OUT --output_folder=EVAL

Writes ``EVAL/scores.txt`` (``enrol test score label``), ``EVAL/embeddings.pt``
and ``EVAL/metrics.json`` (EER in percent, normalised minDCF at p=0.01, 0.05).
"""

import sys

from speechbrain_moco.recipe import summary
from speechbrain_moco.verification import run_verify

if __name__ == "__main__":
    print(summary(run_verify(sys.argv[1:])))
