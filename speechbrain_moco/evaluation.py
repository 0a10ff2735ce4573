"""Verification on a trial list: trial manifest -> embeddings -> scores -> metrics.

Stages talk through files in ``out_dir``: ``trial_utts.csv``, ``embeddings.pt``,
``scores.txt`` (``enrol test score label``) and ``metrics.json``.
"""

import os

from speechbrain.utils.logger import get_logger

from speechbrain_moco.audio import audio_frames
from speechbrain_moco.dataio import utterance_dataset
from speechbrain_moco.extract import extract_embeddings, save_embeddings
from speechbrain_moco.manifest import read_trials, write_manifest
from speechbrain_moco.metrics import verification_metrics
from speechbrain_moco.scoring import score_trials, write_metrics, write_scores

logger = get_logger(__name__)


def resolve_trials(data_folder, verification_file):
    """Absolute trial-list path (relative paths are taken from data_folder)."""
    if verification_file is None:
        return None
    if not os.path.isabs(verification_file) and not os.path.exists(verification_file):
        verification_file = os.path.join(data_folder, verification_file)
    if not os.path.isfile(verification_file):
        raise FileNotFoundError(f"trial list not found: {verification_file}")
    return verification_file


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


def evaluate_trials(trials_path, data_folder, embed_fn, out_dir, device="cpu",
                    batch_size=8, sample_rate=16000, progress=True):
    """Embed the trial utterances, score with cosine, write files, return metrics."""
    os.makedirs(out_dir, exist_ok=True)
    trials = read_trials(trials_path)
    csv_path = trial_manifest(trials, data_folder, os.path.join(out_dir, "trial_utts.csv"),
                              trials_path, sample_rate)
    data = utterance_dataset(csv_path, data_folder, sample_rate)
    ids, emb = extract_embeddings(data, embed_fn, device, batch_size, progress)
    save_embeddings(os.path.join(out_dir, "embeddings.pt"), ids, emb)
    scores = score_trials(trials, dict(zip(ids, emb)))
    labels = [t[0] for t in trials]
    write_scores(os.path.join(out_dir, "scores.txt"), trials, scores)
    metrics = verification_metrics(scores, labels)
    metrics["trials"] = os.path.abspath(trials_path)
    write_metrics(os.path.join(out_dir, "metrics.json"), metrics)
    logger.info("%s: EER %.2f%% minDCF(0.01) %.4f on %d trials", out_dir,
                metrics["EER"], metrics["minDCF_p0.01"], metrics["n_trials"])
    return metrics
