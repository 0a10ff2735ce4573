"""Verification: embeddings of a trained run, scoring back-ends (cosine, PLDA), score
normalisation, EER / minDCF, score files, plots, the trial-list evaluation, and the
export to SpeechBrain's inference classes."""

from speechbrain_moco.verification.calibration import (
    error_rates,
    fit_calibration,
    fit_calibration_unlabelled,
    operating_point,
)
from speechbrain_moco.verification.embeddings import (
    cached_embeddings,
    crop_average,
    extract_embeddings,
    load_embeddings,
    load_trained_encoder,
    save_embeddings,
    training_embeddings,
)
from speechbrain_moco.verification.evaluate import evaluate_trials
from speechbrain_moco.verification.metrics import (
    compute_eer,
    compute_min_dcf,
    det_curve,
    metrics_line,
    verification_metrics,
)
from speechbrain_moco.verification.plda import PLDAScorer
from speechbrain_moco.verification.score_files import read_scores, trial_index, write_metrics, write_scores
from speechbrain_moco.verification.score_norm import normalize_scores
from speechbrain_moco.verification.scorers import CosineScorer, Scorer, cosine_score
from speechbrain_moco.verification.statistics import stats_embed_fn, stats_embedding

__all__ = [
    "CosineScorer",
    "PLDAScorer",
    "Scorer",
    "cached_embeddings",
    "compute_eer",
    "compute_min_dcf",
    "cosine_score",
    "crop_average",
    "det_curve",
    "error_rates",
    "evaluate_trials",
    "extract_embeddings",
    "fit_calibration",
    "fit_calibration_unlabelled",
    "load_embeddings",
    "load_trained_encoder",
    "metrics_line",
    "normalize_scores",
    "operating_point",
    "read_scores",
    "save_embeddings",
    "stats_embed_fn",
    "stats_embedding",
    "trial_index",
    "training_embeddings",
    "verification_metrics",
    "write_metrics",
    "write_scores",
]
