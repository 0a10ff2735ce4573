#!/usr/bin/env python3
"""Template: MoCo speaker embeddings for a new corpus, step by step.

Copy this folder, point ``data_folder`` in ``moco.yaml`` at your corpus
(``<root>/<speaker>/**/*.wav|flac``; the speaker folders are only used to keep
trial speakers out of training and for reporting -- MoCo itself uses no
labels), and run::

    python templates/moco_speaker/train.py templates/moco_speaker/moco.yaml

With ``data_folder: null`` it generates the embedded synthetic corpus, trains a
small ECAPA for a few epochs and prints the EER on held-out speakers.

Everything reusable lives in the ``speechbrain_moco`` library; this file only
shows the order of the steps. Each step can be replaced by your own code.
"""

import sys

from speechbrain.utils.distributed import if_main_process

from speechbrain_moco.brain import MoCoBrain
from speechbrain_moco.recipe import evaluate_run, load_hparams, prepare_experiment, summary, train

if __name__ == "__main__":
    # 1. Command line -> (yaml file, run options such as --device, yaml overrides).
    #    Also starts the DDP process group when launched with torchrun.
    hparams_file, run_opts, overrides, hparams = load_hparams(sys.argv[1:])

    # 2. Data: generate the embedded corpus if data_folder is null, create the
    #    experiment folder (log, hyperparams.yaml copy) and write the manifests
    #    (train.csv / valid.csv / test.csv) on the main process only.
    #    Swap `prepare_data` in the yaml for your own prep function if your
    #    corpus is not one folder per speaker.
    trials = prepare_experiment(hparams, hparams_file, overrides)

    # 3. Training: two random crops per utterance, independent augmentation,
    #    query encoder trained with InfoNCE against the momentum key encoder and
    #    the queue. Subclass MoCoBrain (e.g. to change the loss) and pass it here.
    brain = train(hparams, run_opts, brain_class=MoCoBrain)

    # 4. Evaluation: embed the trial utterances with the query encoder, cosine
    #    scores, EER/minDCF -> <output_folder>/eval/{scores.txt,metrics.json},
    #    next to a no-training Fbank mean/std baseline.
    if trials is not None and if_main_process():
        metrics, baseline = evaluate_run(brain, hparams, trials)
        print(summary(metrics, baseline))
