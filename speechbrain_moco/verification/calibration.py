"""Decision thresholds and score calibration: from cosine scores to stated decisions.

A threshold is an operating point of a scored trial list (equal error rate, minimum
detection cost at a target prior, or a target false-accept rate); accept when
``score > threshold``, reject otherwise, as SpeechBrain's ``verify_batch`` does.

Calibration maps a score to a log-likelihood ratio, ``llr = scale * score + offset``
(linear, as BOSARIS and Kaldi do): fitted by prior-weighted logistic regression on a
labelled list when one exists, else, label-free, from a two-Gaussian mixture of the
scores of pairs of training utterances (the high component taken as same-speaker
pairs). With calibrated scores the Bayes decision for a target prior ``p`` is
``llr > log((1 - p) / p)``.
"""

import math

import numpy as np

from speechbrain_moco.verification.metrics import _dcf_from_points, _eer_from_points, _operating_points


def operating_point(scores, labels, point="eer"):
    """Threshold of ``scores`` at an operating point.

    Arguments
    ---------
    scores, labels : array-like
        Scores and 1 / 0 labels of a trial list.
    point : str
        ``"eer"``, ``"mindcf0.01"`` / ``"mindcf0.05"`` (the threshold of the minimum
        detection cost at that target prior), or ``"far=0.01"`` (the lowest threshold
        whose false-accept rate is at most 1 %).

    The threshold returned lies halfway between the score the operating point rejects
    and the next higher score of the list: the same decisions on the list, and no trial
    sits on the threshold, where a score computed another way (another batch, another
    loader) could fall on either side by rounding.

    Example
    -------
    >>> s, y = [0.9, 0.8, 0.7, 0.6, 0.5, 0.2], [1, 1, 0, 1, 0, 0]
    >>> round(operating_point(s, y, "eer"), 6), round(operating_point(s, y, "far=0.0"), 6)
    (0.65, 0.75)
    """
    points = _operating_points(scores, labels)
    thresholds = points[0]
    if point == "eer":
        value = _eer_from_points(*points)[1]
    elif point.startswith("mindcf"):
        value = _dcf_from_points(*points, float(point[len("mindcf") :]), 1.0, 1.0)[1]
    elif point.startswith("far="):
        target = float(point[len("far=") :])
        ok = np.flatnonzero(points[2] / points[4] <= target + 1e-12)
        value = float(thresholds[ok[0]])
    else:
        raise ValueError(f"unknown operating point {point!r}: eer, mindcf<p>, far=<rate>")
    above = thresholds[thresholds > value]
    return float((value + above[0]) / 2) if above.size else float(value + 1e-6)


def error_rates(scores, labels, threshold):
    """``(false-accept rate, miss rate)`` of deciding ``score > threshold``.

    Example
    -------
    >>> error_rates([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0], 0.5)
    (0.5, 0.5)
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    accept = scores > threshold
    return float(accept[~labels].mean()), float((~accept[labels]).mean())


def fit_calibration(scores, labels, prior=0.5, iterations=50):
    """``(scale, offset)`` of ``llr = scale * score + offset`` by logistic regression.

    The targets and non-targets are weighted to the effective ``prior`` (BOSARIS's
    ``train_llr_fusion``), so the fitted llr does not depend on how many trials of each
    kind the list has. Newton's method on the two parameters.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> s = np.concatenate([rng.normal(1, 1, 4000), rng.normal(-1, 1, 4000)])
    >>> y = np.r_[np.ones(4000), np.zeros(4000)]
    >>> scale, offset = fit_calibration(s, y)
    >>> round(scale, 1), abs(round(offset, 1))   # the true llr of N(1,1) vs N(-1,1): 2 s
    (2.0, 0.0)
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.float64)
    n_tar, n_non = y.sum(), (1 - y).sum()
    if n_tar == 0 or n_non == 0:
        raise ValueError("calibration needs target and non-target trials")
    weights = np.where(y == 1, prior / n_tar, (1 - prior) / n_non)
    logit_prior = math.log(prior / (1 - prior))
    x = np.stack([s, np.ones_like(s)], axis=1)
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ theta + logit_prior)))
        grad = x.T @ (weights * (p - y))
        hess = (x * (weights * p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def fit_calibration_unlabelled(scores, iterations=200, seed=0):
    """``(scale, offset)`` of a linear llr fitted without labels.

    ``scores`` are scores of pairs of utterances of an unlabelled corpus (most pairs
    are different speakers). A two-component Gaussian mixture with a shared variance
    is fitted by EM; the component of higher mean stands for same-speaker pairs, and
    the log-ratio of the two components, linear in the score, is the llr.

    Example
    -------
    >>> rng = np.random.default_rng(1)
    >>> s = np.concatenate([rng.normal(0.6, 0.1, 500), rng.normal(0.0, 0.1, 9500)])
    >>> scale, offset = fit_calibration_unlabelled(s)
    >>> round(-offset / scale, 2)   # llr = 0 halfway between the two means
    0.3
    """
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = np.quantile(s, [0.5, 0.99])
    mu, var, w = np.array([lo, hi]), np.full(2, s.var() / 4 + 1e-12), np.array([0.9, 0.1])
    for _ in range(iterations):
        log_p = -0.5 * (s[:, None] - mu) ** 2 / var.mean() + np.log(w)
        log_p -= log_p.max(axis=1, keepdims=True)
        r = np.exp(log_p)
        r /= r.sum(axis=1, keepdims=True)
        n = r.sum(axis=0) + 1e-12
        mu = (r * s[:, None]).sum(axis=0) / n
        var = np.full(2, ((r * (s[:, None] - mu) ** 2).sum()) / s.size + 1e-12)
        w = n / s.size
    if mu[1] < mu[0]:
        mu = mu[::-1]
    v = var.mean()
    return float((mu[1] - mu[0]) / v), float(-(mu[1] ** 2 - mu[0] ** 2) / (2 * v))
