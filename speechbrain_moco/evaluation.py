"""Verification on a trial list: trial manifest -> embeddings -> scores -> metrics.

Stages talk through files in ``out_dir``: ``trial_utts.csv``, ``embeddings.pt``,
``scores.txt`` (``enrol test score label``) and ``metrics.json``.
"""

import os

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.audio import audio_frames
from speechbrain_moco.backends import CosineScorer
from speechbrain_moco.dataio import utterance_dataset
from speechbrain_moco.extract import extract_embeddings, save_embeddings
from speechbrain_moco.manifest import read_trials, write_manifest
from speechbrain_moco.metrics import verification_metrics
from speechbrain_moco.plots import plot_eval_folder
from speechbrain_moco.score_norm import normalize_scores
from speechbrain_moco.scoring import trial_index, write_metrics, write_scores

logger = get_logger(__name__)


def resolve_trials(data_folder, verification_file):
    """Absolute trial-list path (relative paths are taken from data_folder)."""
    if verification_file is None:
        return None
    if not os.path.isabs(verification_file) and not os.path.exists(verification_file):
        verification_file = os.path.join(data_folder, verification_file)
    if not os.path.isfile(verification_file):
        raise FileNotFoundError(f"trial list not found: {verification_file}")
    return os.path.abspath(verification_file)  # preps join relative paths to data_folder again


def trial_manifest(trials, data_folder, csv_path, trials_path, sample_rate=16000):
    """Write a manifest of the unique utterances named in ``trials``.

    IDs are the paths exactly as the trial list writes them.
    """
    rows, seen = [], set()
    for _, enrol, test in trials:
        for rel in (enrol, test):
            if rel in seen:
                continue
            seen.add(rel)
            path = os.path.join(data_folder, rel)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{trials_path}: names {rel}, not found under {data_folder}")
            frames = audio_frames(path)
            rows.append({
                "ID": rel, "duration": frames / sample_rate, "wav": "$data_root/" + rel,
                "start": 0, "stop": frames, "spk_id": rel.split("/")[0],
            })
    write_manifest(rows, csv_path)
    return csv_path


def cached_embeddings(data, embed_fn, cache_path, cache_key, device, batch_size, progress):
    """Embeddings of ``data``, reused from ``cache_path`` when made by the same model."""
    if os.path.isfile(cache_path):
        cached = torch.load(cache_path, map_location="cpu", weights_only=False)
        if cached.get("key") == cache_key and set(data.data_ids) <= set(cached["ids"]):
            logger.info("reusing cached embeddings %s", cache_path)
            return cached["ids"], cached["embeddings"]
    ids, emb = extract_embeddings(data, embed_fn, device, batch_size, progress)
    save_embeddings(cache_path, ids, emb, key=cache_key)
    return ids, emb


def evaluate_trials(trials_path, data_folder, embed_fn, out_dir, device="cpu",
                    batch_size=8, sample_rate=16000, progress=True, scorer=None,
                    cohort=None, score_norm=None, top_k=300, history_path=None, cache_key=None,
                    manifest=None):
    """Embed the trial utterances, score, write files and plots, return metrics.

    ``scorer`` is a fitted back-end (cosine when None); ``score_norm`` one of
    ``znorm``, ``tnorm``, ``snorm``, ``asnorm`` with ``cohort`` embeddings.
    Embeddings are cached in ``out_dir/embeddings.pt`` under ``cache_key``.
    ``manifest``: the trial utterances' manifest when the caller already wrote
    it with ``trial_manifest`` (each file's header is otherwise read again).
    """
    os.makedirs(out_dir, exist_ok=True)
    trials = read_trials(trials_path)
    csv_path = manifest or trial_manifest(trials, data_folder,
                                          os.path.join(out_dir, "trial_utts.csv"),
                                          trials_path, sample_rate)
    data = utterance_dataset(csv_path, data_folder, sample_rate)
    ids, emb = cached_embeddings(data, embed_fn, os.path.join(out_dir, "embeddings.pt"), cache_key,
                                 device, batch_size, progress)
    e_idx, t_idx = trial_index(trials, ids)
    scorer = scorer or CosineScorer()
    scores = scorer.score(emb[e_idx], emb[t_idx])
    if score_norm:
        if cohort is None:
            raise ValueError(f"score_norm={score_norm} needs cohort embeddings")
        scores = normalize_scores(scores, emb, emb, cohort, score_norm, top_k, e_idx, t_idx,
                                  scorer=scorer)
    labels = [t[0] for t in trials]
    write_scores(os.path.join(out_dir, "scores.txt"), trials, scores)
    metrics = verification_metrics(scores, labels)
    metrics.update(trials=os.path.abspath(trials_path), backend=type(scorer).__name__,
                   score_norm=score_norm)
    write_metrics(os.path.join(out_dir, "metrics.json"), metrics)
    name = type(scorer).__name__ + (f"+{score_norm}" if score_norm else "")
    plot_eval_folder(out_dir, history_path, name=name)
    logger.info("%s: EER %.2f%% minDCF(0.01) %.4f on %d trials", out_dir,
                metrics["EER"], metrics["minDCF_p0.01"], metrics["n_trials"])
    return metrics
