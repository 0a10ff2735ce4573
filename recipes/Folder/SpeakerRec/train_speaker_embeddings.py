#!/usr/bin/env python3
"""Supervised (AAM-softmax) speaker embeddings, from scratch or MoCo-initialised.

Run::

    python recipes/Folder/SpeakerRec/train_speaker_embeddings.py \
        recipes/Folder/SpeakerRec/hparams/train_ecapa.yaml \
        --data_folder=ROOT --output_folder=OUT [--init_from=MOCO_OUT]

The encoder is saved as ``embedding_model``: score the run with
``recipes/Folder/MoCo/verify.py ... --pretrain_path=OUT``. The trainer lives in
``speechbrain_moco.supervised``.
"""

import sys

from speechbrain_moco.recipe import summary
from speechbrain_moco.supervised import run_supervised

if __name__ == "__main__":
    _, metrics, baseline = run_supervised(sys.argv[1:])
    if metrics is not None:
        print(summary(metrics, baseline))
