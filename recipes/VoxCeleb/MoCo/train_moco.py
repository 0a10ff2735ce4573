#!/usr/bin/env python3
"""MoCo speaker embeddings on VoxCeleb (no speaker labels used for training).

Run (single GPU, then multi-GPU)::

    python recipes/VoxCeleb/MoCo/train_moco.py recipes/VoxCeleb/MoCo/hparams/moco.yaml \
        --data_folder=/data/voxceleb/wav --verification_file=/data/voxceleb/veri_test2.txt
    torchrun --nproc_per_node=4 recipes/VoxCeleb/MoCo/train_moco.py \
        recipes/VoxCeleb/MoCo/hparams/moco.yaml ...

``hparams/moco_xvector.yaml`` trains the authors' x-vector TDNN instead of ECAPA.
Until a dedicated VoxCeleb prep lands, the folder prep reads ``<wav>/idXXXXX/<video>/NNNNN.wav``
(speaker = first folder level), which is VoxCeleb1's and converted VoxCeleb2's layout.
"""

import sys

from speechbrain_moco.recipe import run_moco, summary

if __name__ == "__main__":
    _, metrics, baseline = run_moco(sys.argv[1:])
    if metrics is not None:
        print(summary(metrics, baseline))
