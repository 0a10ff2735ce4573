"""Speaker-verification metrics: EER, minDCF and the DET curve.

All metrics are sort based: the scores are sorted once (O(N log N)) and
cumulative counts of target / non-target trials give the miss and false-alarm
rates at every distinct score, in O(N) memory. A trial is *rejected* at
threshold ``t`` when ``score <= t`` and *accepted* when ``score > t``, exactly
as in ``speechbrain.utils.metric_stats.EER`` / ``minDCF``; the candidate
thresholds are the distinct scores (SpeechBrain's extra midpoints give the same
operating points as the distinct score below them, so they add nothing).
"""

import numpy as np
import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def _to_numpy(x, dtype):
    """Converts a tensor / array / sequence to a flat numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(dtype, copy=False).ravel()


def _operating_points(scores, labels):
    """Error counts at every distinct score used as a threshold.

    Arguments
    ---------
    scores : array-like or torch.Tensor
        Trial scores, higher means more likely a target trial.
    labels : array-like or torch.Tensor
        1 for target trials, 0 for non-target trials.

    Returns
    -------
    thresholds : np.ndarray
        Sorted distinct scores (float64).
    n_miss : np.ndarray
        Number of targets with ``score <= threshold``.
    n_fa : np.ndarray
        Number of non-targets with ``score > threshold``.
    n_tar : int
        Number of target trials.
    n_non : int
        Number of non-target trials.
    """
    scores = _to_numpy(scores, np.float64)
    labels = _to_numpy(labels, np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.size} vs {labels.size}")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    labels = labels.astype(bool)
    n_tar = int(np.count_nonzero(labels))
    n_non = int(labels.size - n_tar)
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"need both target and non-target trials, got {n_tar} target and {n_non} non-target")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    cum_tar = np.cumsum(labels[order], dtype=np.int64)
    del order
    # Index of the last trial of each group of equal scores (ties kept whole).
    ends = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    ends = np.append(ends, sorted_scores.size - 1)
    thresholds = sorted_scores[ends]
    n_miss = cum_tar[ends]
    n_fa = n_non - ((ends + 1) - n_miss)
    return thresholds, n_miss, n_fa, n_tar, n_non


def compute_eer(scores, labels):
    """Equal error rate, as a fraction in [0, 1], and its threshold.

    At the distinct score where ``|P_fa - P_miss|`` is smallest (first one in
    ascending order on ties) returns ``(P_fa + P_miss) / 2``, which equals
    ``speechbrain.utils.metric_stats.EER``.

    Arguments
    ---------
    scores : array-like or torch.Tensor
        Trial scores.
    labels : array-like or torch.Tensor
        1 for target trials, 0 for non-target trials.

    Returns
    -------
    eer : float
        Equal error rate in [0, 1].
    threshold : float
        Threshold (reject when ``score <= threshold``).

    Example
    -------
    >>> compute_eer([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0])
    (0.0, 0.3)
    >>> compute_eer([0.9, 0.2, 0.6, 0.1], [1, 1, 0, 0])
    (0.5, 0.2)
    """
    return _eer_from_points(*_operating_points(scores, labels))


def _eer_from_points(thr, n_miss, n_fa, n_tar, n_non):
    """EER from the output of ``_operating_points``."""
    # Rates rounded to float32 as in SpeechBrain (its tensors are float32), so
    # that exact ties of |P_fa - P_miss| (e.g. +d and -d) break the same way.
    p_fa32 = n_fa.astype(np.float32) / np.float32(n_non)
    p_miss32 = n_miss.astype(np.float32) / np.float32(n_tar)
    gap = np.abs(p_fa32.astype(np.float64) - p_miss32.astype(np.float64))
    del p_fa32, p_miss32
    idx = int(np.argmin(gap))
    eer = (n_fa[idx] / n_non + n_miss[idx] / n_tar) / 2
    return float(eer), float(thr[idx])


def compute_min_dcf(scores, labels, p_target=0.01, c_miss=1.0, c_fa=1.0):
    """Normalised minimum detection cost and its threshold.

    ``C_det(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)``
    minimised over the distinct scores, then divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))`` (the cost of the best
    trivial system). Multiplied back by that factor it equals
    ``speechbrain.utils.metric_stats.minDCF``, which is not normalised.

    Arguments
    ---------
    scores : array-like or torch.Tensor
        Trial scores.
    labels : array-like or torch.Tensor
        1 for target trials, 0 for non-target trials.
    p_target : float
        Prior probability of a target trial.
    c_miss : float
        Cost of a miss.
    c_fa : float
        Cost of a false alarm.

    Returns
    -------
    min_dcf : float
        Normalised minimum DCF.
    threshold : float
        Threshold reaching it (reject when ``score <= threshold``).

    Example
    -------
    >>> compute_min_dcf([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0])
    (0.0, 0.3)
    >>> compute_min_dcf([0.9, 0.2, 0.6, 0.1], [1, 1, 0, 0], p_target=0.5)
    (0.5, 0.1)
    """
    points = _operating_points(scores, labels)
    return _dcf_from_points(*points, p_target, c_miss, c_fa)


def _dcf_from_points(thr, n_miss, n_fa, n_tar, n_non, p_target, c_miss, c_fa):
    """Normalised minDCF from the output of ``_operating_points``."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    c_det = c_miss * p_target * (n_miss / n_tar) + c_fa * (1 - p_target) * (n_fa / n_non)
    idx = int(np.argmin(c_det))
    c_def = min(c_miss * p_target, c_fa * (1 - p_target))
    return float(c_det[idx] / c_def), float(thr[idx])


def det_curve(scores, labels):
    """False-alarm and miss rates at every operating point (for DET plots).

    The first point is the accept-all system (``P_fa = 1``, ``P_miss = 0``),
    then one point per distinct score used as threshold, ending at the
    reject-all system (``P_fa = 0``, ``P_miss = 1``).

    Arguments
    ---------
    scores : array-like or torch.Tensor
        Trial scores.
    labels : array-like or torch.Tensor
        1 for target trials, 0 for non-target trials.

    Returns
    -------
    p_fa : np.ndarray
        False-alarm rates, non-increasing.
    p_miss : np.ndarray
        Miss rates, non-decreasing.

    Example
    -------
    >>> p_fa, p_miss = det_curve([0.9, 0.2, 0.6, 0.1], [1, 1, 0, 0])
    >>> p_fa.tolist()
    [1.0, 0.5, 0.5, 0.0, 0.0]
    >>> p_miss.tolist()
    [0.0, 0.0, 0.5, 0.5, 1.0]
    """
    _, n_miss, n_fa, n_tar, n_non = _operating_points(scores, labels)
    p_fa = np.concatenate(([1.0], n_fa / n_non))
    p_miss = np.concatenate(([0.0], n_miss / n_tar))
    return p_fa, p_miss


def verification_metrics(scores, labels):
    """All verification metrics as a JSON-serialisable dict.

    Arguments
    ---------
    scores : array-like or torch.Tensor
        Trial scores.
    labels : array-like or torch.Tensor
        1 for target trials, 0 for non-target trials.

    Returns
    -------
    dict
        ``EER`` (percent), ``EER_threshold``, ``minDCF_p0.01``,
        ``minDCF_p0.05`` (normalised), ``n_trials``, ``n_target``,
        ``n_nontarget``; plain Python floats and ints.

    Example
    -------
    >>> m = verification_metrics([0.9, 0.2, 0.6, 0.1], [1, 1, 0, 0])
    >>> m["EER"], m["n_trials"], m["n_target"], m["n_nontarget"]
    (50.0, 4, 2, 2)
    """
    points = _operating_points(scores, labels)
    eer, eer_thr = _eer_from_points(*points)
    dcf1, _ = _dcf_from_points(*points, 0.01, 1.0, 1.0)
    dcf5, _ = _dcf_from_points(*points, 0.05, 1.0, 1.0)
    n_target, n_nontarget = points[3], points[4]
    metrics = {
        "EER": float(eer * 100.0),
        "EER_threshold": float(eer_thr),
        "minDCF_p0.01": float(dcf1),
        "minDCF_p0.05": float(dcf5),
        "n_trials": int(n_target + n_nontarget),
        "n_target": int(n_target),
        "n_nontarget": int(n_nontarget),
    }
    logger.info(
        "EER %.3f%%, minDCF(0.01) %.4f, minDCF(0.05) %.4f on %d trials",
        metrics["EER"],
        dcf1,
        dcf5,
        n_target + n_nontarget,
    )
    return metrics


def metrics_line(metrics, baseline=None):
    """One console line of a ``metrics.json`` dict: EER (with its 95 % interval when the dict
    has one), both minDCFs, number of trials, and the EER of a ``baseline`` (the Fbank
    statistics of a recipe's ``stats_baseline``).

    Example
    -------
    >>> metrics_line({"EER": 5.25, "minDCF_p0.01": 0.5, "minDCF_p0.05": 0.25, "n_trials": 8})
    'EER: 5.25% | minDCF(p=0.01): 0.5000 | minDCF(p=0.05): 0.2500 | 8 trials'
    """
    ci = metrics.get("EER_ci95")
    shown = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    line = (
        f"EER: {metrics['EER']:.2f}%{shown} | minDCF(p=0.01): {metrics['minDCF_p0.01']:.4f} | "
        f"minDCF(p=0.05): {metrics['minDCF_p0.05']:.4f} | {metrics['n_trials']} trials"
    )
    if baseline is not None:
        line += f" | Fbank mean/std cosine baseline EER: {baseline['EER']:.2f}%"
    return line
