"""The verification job: a training run's encoder, a back-end, a trial list.

``python verify.py hparams/verification_cosine.yaml --data_folder=ROOT
--verification_file=TRIALS --pretrain_path=OUT --output_folder=EVAL`` calls
``run_verify``; every recipe's ``verify.py`` does, so no recipe copies code.
"""

import json
import os
import random
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.logger import get_logger

from speechbrain_moco.backends import CosineScorer, PLDAScorer
from speechbrain_moco.dataio import utterance_dataset
from speechbrain_moco.encoder import embed
from speechbrain_moco.evaluation import cached_embeddings, evaluate_trials, resolve_trials
from speechbrain_moco.recipe import load_hparams

logger = get_logger(__name__)


def load_trained_encoder(pretrain_path, run_opts, average_last=1, crop_seconds=None):
    """Rebuild a training run's features and query encoder from its folder.

    Reads ``<pretrain_path>/hyperparams.yaml`` (written by the training job)
    and loads ``embedding_model`` from the latest checkpoint in ``save/``, or
    the average of the last ``average_last`` end-of-epoch checkpoints
    (SpeechBrain's ``average_checkpoints``). With ``crop_seconds`` each
    utterance is embedded as the mean of its fixed-length crops.
    """
    hp_path = os.path.join(pretrain_path, "hyperparams.yaml")
    if not os.path.isfile(hp_path):
        raise FileNotFoundError(f"{hp_path} not found: is {pretrain_path} a training --output_folder?")
    with open(hp_path, encoding="utf-8") as fin:
        train_hp = load_hyperpyyaml(fin, {"output_folder": pretrain_path, "data_folder": None,
                                          "noise_annotation": None, "rir_annotation": None})
    encoder, norm = train_hp["embedding_model"], train_hp["mean_var_norm"]
    ckpt = sb.utils.checkpoints.Checkpointer(
        os.path.join(pretrain_path, "save"),
        recoverables={"embedding_model": encoder, "mean_var_norm": norm},
        allow_partial_load=True,  # runs made before mean_var_norm was checkpointed
    )
    loaded = ckpt.recover_if_possible()
    if loaded is None:
        raise FileNotFoundError(f"no checkpoint found in {pretrain_path}/save")
    if "embedding_model" not in loaded.paramfiles:  # partial loading must not mean a random encoder
        raise FileNotFoundError(f"{loaded.path} has no embedding_model.ckpt")
    check_norm_loaded(norm, loaded.path)
    if average_last > 1:
        last = ckpt.find_checkpoints(max_num_checkpoints=average_last,
                                     ckpt_predicate=lambda c: c.meta.get("end-of-epoch", True))
        encoder.load_state_dict(sb.utils.checkpoints.average_checkpoints(last, "embedding_model"))
        logger.info("averaged %d checkpoints of %s", len(last), pretrain_path)
    device = run_opts.get("device", "cpu")
    feats, norm = train_hp["compute_features"].to(device), norm.to(device).eval()
    encoder = encoder.to(device).eval()

    def full(wavs, lens):
        return embed(encoder, norm(feats(wavs), lens), lens)

    fn = full if crop_seconds is None else crop_average(full, int(crop_seconds * train_hp["sample_rate"]))
    fn.checkpoint = f"{loaded.path}|avg{average_last}|crop{crop_seconds}"
    return fn, train_hp


def check_norm_loaded(norm, where):
    """Raise unless a ``global`` InputNormalization holds statistics.

    A ``feature_norm: global`` run saves its corpus mean/std in the checkpoint
    (``mean_var_norm.ckpt``); without them every feature would be garbage.
    """
    if getattr(norm, "norm_type", None) == "global" and not getattr(norm, "count", 0):
        raise ValueError(f"{where}: feature_norm is global but the checkpoint has no "
                         "mean_var_norm statistics (mean_var_norm.ckpt)")
    return norm


def training_embeddings(hparams, embed_fn, device, sample_rate):
    """Label-free embeddings of (a seeded subset of) the training run's utterances.

    Used as the score-normalisation cohort, for PLDA (on k-means pseudo-labels)
    and for cosine mean subtraction. Cached in ``<output_folder>/train_embeddings.pt``.
    """
    info_path = os.path.join(hparams["pretrain_path"], "run_info.json")
    manifest, root = hparams["cohort_annotation"], hparams["cohort_data_folder"]
    if manifest is None:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        manifest, root = info["train_annotation"], info["data_folder"]
    data = utterance_dataset(manifest, root, sample_rate)
    if len(data) > hparams["cohort_size"]:
        keep = set(random.Random(0).sample(data.data_ids, hparams["cohort_size"]))
        data = data.filtered_sorted(key_test={"id": lambda uid: uid in keep})
    out = os.path.join(hparams["output_folder"], "train_embeddings.pt")
    _, emb = cached_embeddings(data, embed_fn, out, embed_fn.checkpoint, device,
                               hparams["batch_size"], True)
    return emb


def make_scorer(hparams, train_emb):
    """The back-end chosen in the verification yaml, fitted without labels."""
    if hparams["backend"] == "cosine":
        scorer = CosineScorer(hparams["mean_subtraction"])
        return scorer.fit(train_emb) if train_emb is not None else scorer
    if hparams["backend"] == "plda":
        n = hparams["plda_n_clusters"] or max(2, len(train_emb) // 10)
        return PLDAScorer(lda_dim=hparams["plda_lda_dim"], n_clusters=n).fit(train_emb)
    raise ValueError(f"backend must be cosine or plda, got {hparams['backend']}")


def crop_average(embed_fn, crop):
    """Embed each utterance as the mean of its consecutive ``crop``-sample crops.

    A remainder shorter than half a crop is dropped; an utterance shorter than
    one crop is embedded whole.
    """

    def fn(wavs, lens):
        out = []
        for wav, rel in zip(wavs, lens):
            wav = wav[: int(round(float(rel) * wavs.shape[1]))]
            n = max(1, wav.numel() // crop + (wav.numel() % crop >= crop // 2))
            crops = [wav[i * crop:(i + 1) * crop] for i in range(n)] if wav.numel() > crop else [wav]
            batch = torch.nn.utils.rnn.pad_sequence(crops, batch_first=True)
            rel_lens = torch.tensor([c.numel() / batch.shape[1] for c in crops], device=wavs.device)
            out.append(embed_fn(batch, rel_lens).mean(dim=0))
        return torch.stack(out)

    return fn


def run_verify(argv=None):
    """``python verify.py hparams/verification_cosine.yaml --data_folder=ROOT
    --verification_file=TRIALS --pretrain_path=OUT --output_folder=EVAL``."""
    argv = sys.argv[1:] if argv is None else argv
    _, run_opts, _, hparams = load_hparams(argv)
    for key in ("data_folder", "pretrain_path"):
        if hparams[key] is None:
            raise ValueError(f"--{key} is required")
    trials = resolve_trials(hparams["data_folder"], hparams["verification_file"])
    if trials is None:
        raise FileNotFoundError("no trial list: give --verification_file")
    device = run_opts.get("device", "cpu")
    embed_fn, train_hp = load_trained_encoder(hparams["pretrain_path"], run_opts,
                                              hparams["average_checkpoints"], hparams["crop_seconds"])
    needs_train = (hparams["backend"] != "cosine" or hparams["mean_subtraction"]
                   or hparams["score_norm"] is not None)
    train_emb = (training_embeddings(hparams, embed_fn, device, train_hp["sample_rate"])
                 if needs_train else None)
    metrics = evaluate_trials(
        trials, hparams["data_folder"], embed_fn, hparams["output_folder"], device,
        hparams["batch_size"], train_hp["sample_rate"], scorer=make_scorer(hparams, train_emb),
        cohort=train_emb, score_norm=hparams["score_norm"], top_k=hparams["cohort_top_k"],
        history_path=os.path.join(hparams["pretrain_path"], "history.jsonl"),
        cache_key=embed_fn.checkpoint)
    metrics["output"] = os.path.join(hparams["output_folder"], "metrics.json")
    return metrics
