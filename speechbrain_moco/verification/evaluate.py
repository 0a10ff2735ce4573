"""Verification on a trial list: trial manifest -> embeddings -> scores -> metrics.

Stages talk through files in ``out_dir``: ``trial_utts.csv``, ``embeddings.pt``,
``scores.txt`` (``enrol test score label``) and ``metrics.json``.
"""

import os

from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.bad_audio import REPORT_NAME, append_report, usable_rows
from speechbrain_moco.dataio.datasets import utterance_dataset
from speechbrain_moco.dataio.manifest import read_manifest, write_manifest
from speechbrain_moco.dataio.trials import read_trials, trial_manifest
from speechbrain_moco.verification.bootstrap import bootstrap_intervals
from speechbrain_moco.verification.embeddings import cached_embeddings
from speechbrain_moco.verification.metrics import verification_metrics
from speechbrain_moco.verification.plots import plot_eval_folder
from speechbrain_moco.verification.score_files import trial_index, write_metrics, write_scores
from speechbrain_moco.verification.score_norm import normalize_scores
from speechbrain_moco.verification.scorers import CosineScorer

logger = get_logger(__name__)


def evaluate_trials(
    trials_path,
    data_folder,
    embed_fn,
    out_dir,
    device="cpu",
    batch_size=8,
    sample_rate=16000,
    progress=True,
    scorer=None,
    cohort=None,
    score_norm=None,
    top_k=300,
    history_path=None,
    cache_key=None,
    manifest=None,
    system="system",
    ci_resamples=1000,
    ci_seed=0,
):
    """Embed the trial utterances, score, write files and plots, return metrics.

    ``system`` names the scored system in the plots (with the back-end and the trial
    list's name).

    ``scorer`` is a fitted back-end (cosine when None); ``score_norm`` one of
    ``znorm``, ``tnorm``, ``snorm``, ``asnorm`` with ``cohort`` embeddings.
    Embeddings are cached in ``out_dir/embeddings.pt`` under ``cache_key``.
    ``manifest``: the trial utterances' manifest when the caller already wrote
    it with ``trial_manifest`` (each file's header is otherwise read again).
    Trial utterances that are unusable audio (:mod:`speechbrain_moco.dataio.bad_audio`) are
    named in ``out_dir/skipped_audio.txt``; the trials naming them are left out, counted
    in ``metrics.json`` (``skipped_audio``, ``n_trials_skipped``), never scored.
    ``metrics.json`` holds ``EER_ci95`` and ``minDCF_p0.01_ci95``: 95 % intervals from
    ``ci_resamples`` bootstrap resamples of the list's speakers (of its trials when the
    names give no speaker), drawn with ``ci_seed``
    (:mod:`speechbrain_moco.verification.bootstrap`).
    """
    os.makedirs(out_dir, exist_ok=True)
    trials = read_trials(trials_path)
    unreadable = {}
    csv_path = manifest or trial_manifest(
        trials,
        data_folder,
        os.path.join(out_dir, "trial_utts.csv"),
        trials_path,
        sample_rate,
        unreadable=unreadable,
    )
    # bad audio: the trials that name it are left out and counted, never scored
    report = os.path.join(out_dir, REPORT_NAME)
    if os.path.isfile(report):
        os.remove(report)  # this scoring's report, not an earlier one's
    if unreadable:
        append_report(report, unreadable)
    rows = read_manifest(csv_path)
    kept, bad = usable_rows(rows, data_folder, sample_rate, report, what=f"utterances of {trials_path}")
    bad.update(unreadable)
    if bad:
        csv_path = os.path.join(out_dir, "trial_utts_usable.csv")
        write_manifest(kept, csv_path)
        n_before = len(trials)
        trials = [t for t in trials if t[1] not in bad and t[2] not in bad]
        if not trials or all(t[0] == 1 for t in trials) or all(t[0] == 0 for t in trials):
            raise ValueError(
                f"{trials_path}: {n_before - len(trials)} of {n_before} trials name unusable audio "
                f"({report}): too few target and non-target trials are left to score"
            )
    n_skipped = (len(read_trials(trials_path)) - len(trials)) if bad else 0
    data = utterance_dataset(csv_path, data_folder, sample_rate)
    ids, emb = cached_embeddings(
        data, embed_fn, os.path.join(out_dir, "embeddings.pt"), cache_key, device, batch_size, progress
    )
    e_idx, t_idx = trial_index(trials, ids)
    scorer = scorer or CosineScorer()
    scores = scorer.score(emb[e_idx], emb[t_idx])
    if score_norm:
        if cohort is None:
            raise ValueError(f"score_norm={score_norm} needs cohort embeddings")
        scores = normalize_scores(scores, emb, emb, cohort, score_norm, top_k, e_idx, t_idx, scorer=scorer)
    labels = [t[0] for t in trials]
    write_scores(os.path.join(out_dir, "scores.txt"), trials, scores)
    metrics = verification_metrics(scores, labels)
    metrics.update(
        bootstrap_intervals(
            scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores,
            labels,
            [t[1] for t in trials],
            [t[2] for t in trials],
            ci_resamples,
            ci_seed,
        )
    )
    metrics.update(
        trials=os.path.abspath(trials_path),
        backend=type(scorer).__name__,
        score_norm=score_norm,
        skipped_audio=len(bad),
        n_trials_skipped=n_skipped,
    )
    write_metrics(os.path.join(out_dir, "metrics.json"), metrics)
    backend = {"CosineScorer": "cosine", "PLDAScorer": "PLDA"}.get(
        type(scorer).__name__, type(scorer).__name__
    )
    name = f"{system}, {backend}" + (f" + {score_norm}" if score_norm else "")
    plot_eval_folder(out_dir, history_path, name=name, trials=os.path.basename(trials_path))
    logger.info(
        "%s: EER %.2f%% [%.2f, %.2f] minDCF(0.01) %.4f on %d trials",
        out_dir,
        metrics["EER"],
        *metrics["EER_ci95"],
        metrics["minDCF_p0.01"],
        metrics["n_trials"],
    )
    return metrics
