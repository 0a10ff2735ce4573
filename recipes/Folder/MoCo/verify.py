#!/usr/bin/env python3
"""Recipe for scoring a trial list with the encoder of a training run (MoCo or supervised).

To run::

    python recipes/Folder/MoCo/verify.py recipes/Folder/MoCo/hparams/verification_cosine.yaml \
        --data_folder=ROOT --verification_file=TRIALS --pretrain_path=OUT --output_folder=EVAL

``OUT`` is a training ``--output_folder``: its ``hyperparams.yaml`` rebuilds the
front-end and the encoder, its latest checkpoint (or the average of the last
``--average_checkpoints``) is loaded. Back-ends, all label-free: cosine (optionally
after subtracting the training mean), or PLDA (``verification_plda.yaml``) trained on
k-means pseudo-speakers of training embeddings; ``--score_norm`` with a cohort of
training embeddings. Writes ``EVAL/scores.txt`` (``enrol test score label``),
``EVAL/metrics.json``, ``embeddings.pt`` (cached) and the DET / score plots.
"""

import os
import sys

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
import speechbrain as sb

from speechbrain_moco.cli import check_device, device_argument, user_errors
from speechbrain_moco.dataio import trial_list_path
from speechbrain_moco.hparams_io import load_yaml
from speechbrain_moco.verification import (
    CosineScorer,
    PLDAScorer,
    evaluate_trials,
    load_trained_encoder,
    metrics_line,
    training_embeddings,
)


def make_scorer(hparams, train_emb):
    """The back-end the yaml names, fitted without labels on ``train_emb``."""
    if hparams["backend"] == "cosine":
        scorer = CosineScorer(hparams["mean_subtraction"])
        return scorer.fit(train_emb) if train_emb is not None else scorer
    if hparams["backend"] == "plda":
        n_clusters = hparams["plda_n_clusters"] or max(2, len(train_emb) // 10)
        return PLDAScorer(lda_dim=hparams["plda_lda_dim"], n_clusters=n_clusters).fit(train_emb)
    raise ValueError(f"backend must be cosine or plda, got {hparams['backend']}")


if __name__ == "__main__":
    with user_errors("verify.py"):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        # before SpeechBrain initialises CUDA: a machine without it gets one line
        check_device(device_argument(sys.argv[1:]))
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        hparams = load_yaml(hparams_file, overrides)  # a mistyped --key: an error naming the closest
        for key in ("data_folder", "pretrain_path"):
            if hparams[key] is None:
                raise ValueError(f"--{key} is required")
        trials = trial_list_path(hparams["verification_file"], hparams["data_folder"])
        if trials is None:
            raise FileNotFoundError("no trial list: give --verification_file")
        device = run_opts.get("device", "cpu")
        embed_fn, train_hp = load_trained_encoder(
            hparams["pretrain_path"], device, hparams["average_checkpoints"], hparams["crop_seconds"]
        )

        needs_train = (
            hparams["backend"] != "cosine" or hparams["mean_subtraction"] or hparams["score_norm"] is not None
        )
        train_emb = None
        if needs_train:  # label-free: the run's training utterances (or a cohort manifest)
            cache = os.path.join(hparams["output_folder"], "train_embeddings.pt")
            train_emb = training_embeddings(
                hparams["pretrain_path"],
                embed_fn,
                cache,
                device,
                hparams["batch_size"],
                hparams["cohort_size"],
                hparams["cohort_annotation"],
                hparams["cohort_data_folder"],
            )
        metrics = evaluate_trials(
            trials,
            hparams["data_folder"],
            embed_fn,
            hparams["output_folder"],
            device,
            hparams["batch_size"],
            train_hp["sample_rate"],
            scorer=make_scorer(hparams, train_emb),
            cohort=train_emb,
            score_norm=hparams["score_norm"],
            top_k=hparams["cohort_top_k"],
            history_path=os.path.join(hparams["pretrain_path"], "history.jsonl"),
            cache_key=embed_fn.checkpoint,
            system=os.path.basename(os.path.normpath(hparams["pretrain_path"])),
            ci_resamples=hparams["ci_resamples"],
            ci_seed=hparams["ci_seed"],
        )
        print(metrics_line(metrics))
