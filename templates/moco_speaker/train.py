#!/usr/bin/env python3
"""Template: MoCo speaker embeddings for a new corpus, one step at a time.

Copy this folder, set ``data_folder`` in ``moco.yaml`` to your corpus
(``<root>/<speaker>/**/*.wav|flac``: the speaker folders only keep trial speakers out
of training; MoCo reads no label), and run::

    python templates/moco_speaker/train.py templates/moco_speaker/moco.yaml

With ``data_folder: null`` it trains a small ECAPA on the embedded synthetic corpus
for a few epochs and prints the EER on its held-out speakers. The full recipe
(several corpora, audio cache, everything the yaml can switch) is
``recipes/Folder/MoCo/train_moco.py``; this file keeps the skeleton.
"""

import os
import sys

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process

from speechbrain_moco.cli import check_device, device_argument, user_errors
from speechbrain_moco.dataio import (
    SkippingDataset,
    drop_short,
    run_preparation,
    two_view_dataset,
    validation_manifest,
)
from speechbrain_moco.verification import metrics_line


def dataio_prep(hparams, data_root):
    """The datasets: each item is two random crops (``view1``, ``view2``) of one utterance.

    ``two_crops`` (in the yaml) draws the crops, seeded by (seed, epoch, utterance) so a
    resumed run sees the same crops. ``$data_root`` in the manifests is replaced by
    ``data_root``. ``SkippingDataset`` replaces an unreadable file by the next one and
    lists it in ``skipped_audio.txt`` instead of stopping the run.
    """
    train = two_view_dataset(hparams["train_annotation"], data_root, hparams["two_crops"])
    # an utterance shorter than a crop would give two views of the same samples: left out
    min_seconds = hparams["min_utterance_seconds"] or hparams["crop_seconds"]
    train, _ = drop_short(train, min_seconds, os.path.join(hparams["output_folder"], "short_utterances.txt"))
    report = os.path.join(hparams["output_folder"], "skipped_audio.txt")
    valid = validation_manifest(hparams["valid_annotation"])  # None: no validation (valid_ratio 0)
    if valid is not None:
        valid = SkippingDataset(two_view_dataset(valid, data_root, hparams["two_crops"]), report)
    return SkippingDataset(train, report), valid


if __name__ == "__main__":
    with user_errors("train.py"):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        # 1. The command line: the yaml, SpeechBrain's run options (--device, --precision,
        #    --debug ...) and overrides of any yaml key (--number_of_epochs=5). Under
        #    torchrun, ddp_init_group starts the process group.
        # before SpeechBrain initialises CUDA: a machine without it gets one line
        check_device(device_argument(sys.argv[1:]))
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        sb.utils.distributed.ddp_init_group(run_opts)
        with open(hparams_file, encoding="utf-8") as fin:
            hparams = load_hyperpyyaml(fin, overrides)

        # 2. The experiment folder (log.txt, a copy of the yaml with the overrides).
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )

        # 3. Manifests: `prepare_data` writes train.csv / valid.csv on the main process,
        #    leaving the trial list's speakers out; every process gets their paths back,
        #    with the data root and the trial list to score.
        prepared, trials = run_preparation(
            hparams["prepare_data"],
            hparams["data_folder"],
            hparams["manifest_folder"],
            hparams["verification_file"],
        )
        train_set, valid_set = dataio_prep(hparams, prepared["data_root"])

        # 4. The Brain. Query branch: Fbank -> normalisation -> embedding_model -> projector;
        #    key branch: momentum copies (no gradient); InfoNCE against the queue. The EMA
        #    update and the enqueue happen after each optimiser step (on_fit_batch_end).
        #    The yaml names the class (brain_class): subclass MoCoBrain to change the positives or
        #    the loss (speechbrain_moco.training.SSPSBrain is one) and name yours there.
        brain = hparams["brain_class"](
            modules=hparams["modules"],
            opt_class=hparams["opt_class"],
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=hparams["checkpointer"],
        )

        # 5. Training: one checkpoint per epoch (queue, both encoders, optimiser, RNG), so
        #    the same command resumes an interrupted run exactly.
        brain.fit(
            brain.hparams.epoch_counter,
            train_set,
            valid_set,
            train_loader_kwargs=hparams["train_dataloader_options"],
            valid_loader_kwargs=hparams["valid_dataloader_options"],
        )

        # 6. Evaluation: embed the trial utterances with the query encoder, cosine scores,
        #    EER / minDCF -> <output_folder>/eval/{scores.txt,metrics.json,det.png}.
        if trials is not None and if_main_process():
            print(metrics_line(*brain.score_trials(trials, prepared["data_root"])))
