"""Systems that need no training, scored on a trial list: Fbank and MFCC mean+std
statistics, and a randomly initialised encoder (the bars a trained encoder must clear), for
``benchmarks/quality.py``."""

import os

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.features import MFCC

from speechbrain_moco.dataio import read_trials, trial_manifest, utterance_dataset
from speechbrain_moco.encoder import embed
from speechbrain_moco.verification import CosineScorer, cached_embeddings, evaluate_trials, stats_embed_fn


def fit_global_norm(norm, feats, data, device="cpu"):
    """Estimate a ``global`` InputNormalization's mean/std on the utterances of ``data``.

    What training would have done for an encoder that is never trained (the
    random-encoder baseline): one pass in train mode, then ``eval()``.
    """
    norm.train()
    with torch.no_grad():
        for item in data:
            wav = item["sig"].to(device).unsqueeze(0)
            norm(feats(wav), torch.ones(1, device=device))
    return norm.eval()


def untrained_embed_fn(kind, yaml_path, overrides=None, device="cpu", norm_manifest=None):
    """Embedding function of a system that needs no training.

    ``kind``: ``fbank_stats`` (mean+std over frames of the yaml's log Fbank),
    ``mfcc_stats`` (mean+std of 20 MFCCs) -- both without per-utterance
    normalisation, which would erase the means -- or ``random`` (the yaml's
    ``embedding_model`` as initialised by its seed, eval mode, after the
    yaml's own feature normalisation; a ``global`` one is first estimated on
    ``norm_manifest = (csv_path, data_folder)``, the utterances to embed).
    """
    with open(yaml_path, encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, dict({"data_folder": None}, **(overrides or {})))
    feats, norm = hp["compute_features"].to(device), hp["mean_var_norm"].to(device)

    if kind == "fbank_stats":
        return stats_embed_fn(feats), hp["sample_rate"]
    if kind == "mfcc_stats":
        return stats_embed_fn(MFCC(n_mfcc=20, deltas=False, context=False).to(device)), hp["sample_rate"]
    if kind == "random":
        if norm.norm_type == "global" and norm_manifest is None:
            raise ValueError(f"{yaml_path}: feature_norm global needs norm_manifest to estimate it on")
        encoder = hp["embedding_model"].to(device).eval()

        def random_fn(wavs, lens):
            if norm.norm_type == "global" and not norm.count:  # first call only: a rerun whose
                # embeddings are cached never embeds, so it skips this pass over the audio
                data = utterance_dataset(norm_manifest[0], norm_manifest[1], hp["sample_rate"])
                fit_global_norm(norm, feats, data, device)
            return embed(encoder, norm(feats(wavs), lens), lens)

        return random_fn, hp["sample_rate"]
    raise ValueError(f"unknown untrained system {kind!r} (fbank_stats | mfcc_stats | random)")


def evaluate_untrained(kind, yaml_path, trials, data_folder, out_dir, device="cpu", overrides=None):
    """Score ``trials`` with an untrained system (see ``untrained_embed_fn``).

    Statistics are z-normalised per dimension with the mean and standard
    deviation of the trial utterances' own statistics (label-free), then
    compared by cosine; the random encoder is scored by plain cosine.
    """
    os.makedirs(out_dir, exist_ok=True)
    csv_path = trial_manifest(
        read_trials(trials), data_folder, os.path.join(out_dir, "trial_utts.csv"), trials
    )
    fn, sample_rate = untrained_embed_fn(kind, yaml_path, overrides, device, (csv_path, data_folder))
    data = utterance_dataset(csv_path, data_folder, sample_rate)
    key = f"{kind}:v3:{yaml_path}:{overrides}"
    scorer = None
    with torch.no_grad():
        if kind.endswith("_stats"):
            cache = os.path.join(out_dir, "embeddings.pt")
            _, emb = cached_embeddings(data, fn, cache, key, device, 8, False)
            scorer = CosineScorer(std_norm=True).fit(emb)
        return evaluate_trials(
            trials,
            data_folder,
            fn,
            out_dir,
            device,
            8,
            sample_rate,
            progress=False,
            scorer=scorer,
            cache_key=key,
            manifest=csv_path,
            system=kind,
        )
