"""Confidence intervals of EER and minDCF, and paired comparisons, by bootstrap over speakers.

Trials of one speaker are not independent: every trial of a speaker whose voice the
encoder gets wrong is wrong together. So the resampling unit is the speaker (Bolle et al.'s
"subsets bootstrap"; Poh and Bengio): a resample draws ``S`` speakers with replacement out
of the list's ``S``, keeps every trial among the drawn speakers, and a speaker drawn ``m``
times counts ``m`` times. A target trial of speaker ``s`` weighs ``m_s``, a non-target trial
between ``s`` and ``t`` weighs ``m_s * m_t`` (each pair of drawn copies). When a trial name
does not start with a speaker folder (``spk/utt.wav``), trials are resampled instead.

Everything is vectorised: the scores are sorted once, and a block of resamples is a
``(block, n_trials)`` weight matrix whose cumulative sums give the miss and false-alarm
rates of every resample at every threshold at once. 1,000 resamples of 400,000 trials take
seconds (``benchmarks/bootstrap_speed.py``).

Two systems scored on the same trial list get the same resamples (the same seed draws the
same speakers), so the difference of their EERs is a paired difference:
:func:`paired_difference`. :func:`pooled_difference` combines such differences over
training seeds (resampled too) and over folds (disjoint test speakers).
"""

import numpy as np
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

BLOCK_ELEMENTS = 4_000_000  # trials x resamples held at once (32 MB of float64)
VERDICTS = ("better", "worse", "not resolved")


def trial_speakers(enrol, test):
    """Speaker index of each trial's two sides and the sorted speaker names, or None.

    A name's speaker is its first path component (``spk/utt.wav``, how VoxCeleb and
    folder corpora name utterances); when some name has none, there are no speakers to
    resample and None is returned.

    Example
    -------
    >>> a, b, names = trial_speakers(["x/1.wav", "y/1.wav"], ["y/2.wav", "y/3.wav"])
    >>> a.tolist(), b.tolist(), names
    ([0, 1], [1, 1], ['x', 'y'])
    >>> trial_speakers(["u1"], ["u2"]) is None
    True
    """
    enrol, test = list(enrol), list(test)
    if not all("/" in n for n in enrol) or not all("/" in n for n in test):
        return None
    spk_e = [n.split("/", 1)[0] for n in enrol]
    spk_t = [n.split("/", 1)[0] for n in test]
    names = sorted(set(spk_e) | set(spk_t))
    index = {s: i for i, s in enumerate(names)}
    return (
        np.fromiter((index[s] for s in spk_e), np.int64, len(spk_e)),
        np.fromiter((index[s] for s in spk_t), np.int64, len(spk_t)),
        names,
    )


class Resampler:
    """The bootstrap resamples of one trial list, as trial weights in blocks.

    Arguments
    ---------
    labels : array-like
        1 for target, 0 for non-target trials (in the list's order).
    enrol, test : sequence of str, optional
        The trials' names; speakers are read from them (see :func:`trial_speakers`).
        Without them, or when they name fewer than two speakers, trials are resampled.
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the draw: the same list, seed and number give the same resamples.

    Example
    -------
    >>> r = Resampler([1, 0, 1], ["a/1", "a/1", "b/1"], ["a/2", "b/2", "b/2"], 4, seed=0)
    >>> r.method, r.n_units, r.counts.shape, r.counts.sum(axis=1).astype(int).tolist()
    ('speaker', 2, (4, 2), [2, 2, 2, 2])
    """

    def __init__(self, labels, enrol=None, test=None, n_resamples=1000, seed=0):
        self.labels = np.asarray(labels).astype(bool).ravel()
        self.n_resamples, self.seed = int(n_resamples), int(seed)
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
        spk = None if enrol is None or test is None else trial_speakers(enrol, test)
        if spk is not None and len(spk[2]) < 2:
            spk = None  # one speaker: nothing to resample but the trials
        rng = np.random.default_rng(self.seed)
        if spk is not None:
            self.method = "speaker"
            self.spk_a, self.spk_b, self.speakers = spk
            self.n_units = len(self.speakers)
            p = np.full(self.n_units, 1.0 / self.n_units)
            self.counts = rng.multinomial(self.n_units, p, size=self.n_resamples).astype(np.float64)
        else:
            self.method, self.speakers = "trial", None
            self.n_units = self.labels.size
            self.counts = None  # drawn block by block: (R, n_trials) would not fit

    def describe(self):
        """The resampling as a JSON-able dict (stored beside the intervals)."""
        return {
            "ci_method": self.method,
            "ci_resamples": self.n_resamples,
            "ci_seed": self.seed,
            "ci_units": self.n_units,
        }

    def blocks(self, order):
        """Yield ``(start, weights)``: the weights of the trials in ``order`` for resamples
        ``start .. start + len(weights)``, a float64 ``(block, n_trials)`` matrix."""
        n = self.labels.size
        block = max(1, min(self.n_resamples, BLOCK_ELEMENTS // max(n, 1)))
        if self.method == "speaker":
            a, b = self.spk_a[order], self.spk_b[order]
            non = ~self.labels[order]
            b_non = b[non]
        else:
            rng = np.random.default_rng(self.seed)
            p = np.full(n, 1.0 / n)
        for start in range(0, self.n_resamples, block):
            stop = min(start + block, self.n_resamples)
            if self.method == "speaker":
                counts = self.counts[start:stop]
                w = counts[:, a]
                w[:, non] *= counts[:, b_non]
            else:
                w = rng.multinomial(n, p, size=stop - start).astype(np.float64)[:, order]
            yield start, w


def _sorted_points(scores, labels):
    """Sort order, target mask in that order and the index of the last trial of each group
    of equal scores (ties kept whole, as :mod:`metrics` does)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in size: {scores.size} vs {labels.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), s.size - 1)
    return order, labels[order], ends


GRID_MAX = 4_000  # quantile thresholds of the speaker-pair path (every distinct score below this)
GRID_TOP = 0.02  # share of non-targets, from the top, whose scores are all thresholds
PAIR_GRID_MAX = 150_000_000  # speaker pairs x thresholds beyond which the direct path runs


def bootstrap_draws(scores, labels, resampler, p_target=0.01):
    """EER (percent) and normalised minDCF of every resample.

    With a speaker resampler and labels that follow the speakers (target = same speaker),
    a trial's weight depends only on its speaker pair, so the weighted error counts at a
    set of thresholds are one matrix product: resample weights of the pairs times the
    pairs' cumulative trial counts. The thresholds are every distinct score when there
    are at most ``GRID_MAX`` of them, else ``GRID_MAX`` quantiles and every score of the top
    ``GRID_TOP`` of non-targets (where minDCF(0.01) lies: a normalised cost below 1 needs a
    false-alarm rate below 1 %); the EER is then found exactly between the two grid
    thresholds around it. Otherwise every trial is weighted directly (slower). The
    results equal the direct weighting's (a test checks it).

    Arguments
    ---------
    scores : array-like
        One score per trial, in the resampler's trial order.
    labels : array-like
        1 for target, 0 for non-target.
    resampler : Resampler
        The resamples (shared by every system scored on this list).
    p_target : float
        Prior of the minDCF.

    Returns
    -------
    eer : np.ndarray
        ``(n_resamples,)`` EERs in percent.
    min_dcf : np.ndarray
        ``(n_resamples,)`` normalised minDCFs.

    Example
    -------
    >>> r = Resampler([1, 1, 0, 0], n_resamples=3, seed=0)
    >>> eer, dcf = bootstrap_draws([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0], r)
    >>> eer.tolist()
    [0.0, 0.0, 0.0]
    """
    order, tar, ends = _sorted_points(scores, labels)
    if tar.size != resampler.labels.size or not np.array_equal(tar, resampler.labels[order]):
        raise ValueError("the scores' labels are not those of the resampler's trial list")
    if resampler.method == "speaker" and np.array_equal(resampler.labels, resampler.spk_a == resampler.spk_b):
        flat = np.asarray(scores, dtype=np.float64).ravel()
        grid = _pair_grid(flat, resampler)
        if grid is not None:
            thresholds, cum_tar, cum_non = grid
            eer, dcf = _rates_to_metrics(cum_tar, cum_non, p_target)
            if thresholds.size < ends.size:  # a grid, not every score: the exact EER
                eer = _exact_eer(flat, order, ends, resampler, thresholds, cum_tar, cum_non)
            return eer, dcf
    eer = np.empty(resampler.n_resamples)
    dcf = np.empty(resampler.n_resamples)
    for start, w in resampler.blocks(order):
        cum_tar = np.cumsum(np.where(tar, w, 0.0), axis=1)[:, ends]
        cum_non = np.cumsum(np.where(tar, 0.0, w), axis=1)[:, ends]
        block = _rates_to_metrics(cum_tar, cum_non, p_target)
        eer[start : start + w.shape[0]], dcf[start : start + w.shape[0]] = block
    return eer, dcf


def _pair_grid(scores, resampler):
    """Weighted cumulative target and non-target counts at a grid of thresholds, by
    speaker pair; None when the pairs x thresholds matrix would be too large."""
    a, b = np.minimum(resampler.spk_a, resampler.spk_b), np.maximum(resampler.spk_a, resampler.spk_b)
    distinct = np.unique(scores)
    if distinct.size <= GRID_MAX:
        grid = distinct
    else:
        non = np.sort(scores[~resampler.labels])
        top = non[int(np.floor((1.0 - GRID_TOP) * non.size)) :]
        tops = distinct[distinct >= top[0]]
        rest = distinct[distinct < top[0]]
        n_rest = max(GRID_MAX, 2)
        picks = np.unique(np.linspace(0, rest.size - 1, n_rest).round().astype(np.int64))
        grid = np.union1d(rest[picks], tops)
    pair, pair_index = np.unique(a * resampler.n_units + b, return_inverse=True)
    if pair.size * grid.size > PAIR_GRID_MAX:
        return None
    cell = np.searchsorted(grid, scores, side="left")  # first threshold >= the score
    hist = np.zeros((pair.size, grid.size), dtype=np.float32)
    np.add.at(hist, (pair_index, cell), 1.0)
    counts_below = np.cumsum(hist, axis=1)  # trials of each pair with score <= threshold
    del hist
    pa, pb = pair // resampler.n_units, pair % resampler.n_units
    is_target = pa == pb
    counts = resampler.counts.astype(np.float32)
    w_tar = counts[:, pa[is_target]]  # a speaker drawn m times: its target trials m times
    w_non = counts[:, pa[~is_target]] * counts[:, pb[~is_target]]
    cum_tar = (w_tar @ counts_below[is_target]).astype(np.float64)
    cum_non = (w_non @ counts_below[~is_target]).astype(np.float64)
    return grid, cum_tar, cum_non


def _exact_eer(scores, order, ends, resampler, grid, cum_tar, cum_non):
    """EER of each resample at every distinct score: ``P_fa - P_miss`` falls as the
    threshold rises, so the best threshold lies between the last grid threshold where it
    is positive and the next; the trials between them are weighted one by one."""
    total_tar, total_non = cum_tar[:, -1], cum_non[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = (total_non[:, None] - cum_non) / total_non[:, None] - cum_tar / total_tar[:, None]
    n_res = cum_tar.shape[0]
    cross = np.argmax(np.nan_to_num(gap, nan=-1.0) <= 0, axis=1)  # first grid point at or past it
    left = np.maximum(cross - 1, 0)
    sorted_scores = scores[order]
    lo = np.searchsorted(sorted_scores, grid[left], side="right")
    lo[cross == 0] = 0
    hi = np.searchsorted(sorted_scores, grid[cross], side="right")
    span = int(max((hi - lo).max(), 1))
    pos = np.minimum(lo[:, None] + np.arange(span)[None, :], scores.size - 1)
    valid = np.arange(span)[None, :] < (hi - lo)[:, None]
    is_end = np.zeros(scores.size, dtype=bool)
    is_end[ends] = True
    rows = np.arange(n_res)[:, None]
    tar = resampler.labels[order][pos]
    a, b = resampler.spk_a[order][pos], resampler.spk_b[order][pos]
    w = resampler.counts[rows, a] * np.where(tar, 1.0, resampler.counts[rows, b])
    w = np.where(valid, w, 0.0)
    base_tar = np.where(cross == 0, 0.0, cum_tar[np.arange(n_res), left])
    base_non = np.where(cross == 0, 0.0, cum_non[np.arange(n_res), left])
    c_tar = base_tar[:, None] + np.cumsum(np.where(tar, w, 0.0), axis=1)
    c_non = base_non[:, None] + np.cumsum(np.where(tar, 0.0, w), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_miss = c_tar / total_tar[:, None]
        p_fa = (total_non[:, None] - c_non) / total_non[:, None]
        # candidates: the left grid point (when there is one), then each threshold in the cell
        cand_miss = np.concatenate([(base_tar / total_tar)[:, None], p_miss], axis=1)
        cand_fa = np.concatenate([((total_non - base_non) / total_non)[:, None], p_fa], axis=1)
        ok = np.concatenate([(cross > 0)[:, None], valid & is_end[pos]], axis=1)
        dist = np.where(ok, np.abs(cand_fa - cand_miss), np.inf)
        idx = np.argmin(np.nan_to_num(dist, nan=np.inf), axis=1)
        eer = 100.0 * (cand_fa[np.arange(n_res), idx] + cand_miss[np.arange(n_res), idx]) / 2
    eer[(total_tar <= 0) | (total_non <= 0)] = np.nan
    return eer


def _rates_to_metrics(cum_tar, cum_non, p_target):
    """EER (percent) and normalised minDCF of each row of weighted cumulative counts
    (targets and non-targets with score <= each threshold; last column: the totals)."""
    total_tar, total_non = cum_tar[:, -1:], cum_non[:, -1:]
    # a resample without targets or non-targets (possible with very few speakers) has no
    # error rates: NaN, left out of the percentiles
    with np.errstate(invalid="ignore", divide="ignore"):
        p_miss = cum_tar / total_tar
        p_fa = (total_non - cum_non) / total_non
        idx = np.argmin(np.nan_to_num(np.abs(p_fa - p_miss), nan=np.inf), axis=1)
        rows = np.arange(cum_tar.shape[0])
        eer = 100.0 * (p_fa[rows, idx] + p_miss[rows, idx]) / 2
        c_det = p_target * p_miss + (1.0 - p_target) * p_fa
        dcf = np.min(np.nan_to_num(c_det, nan=np.inf), axis=1) / min(p_target, 1.0 - p_target)
    bad = (total_tar[:, 0] <= 0) | (total_non[:, 0] <= 0)
    eer[bad], dcf[bad] = np.nan, np.nan
    return eer, dcf


def interval(draws, level=0.95):
    """Percentile interval ``[low, high]`` of bootstrap draws (NaN draws left out).

    Example
    -------
    >>> [round(x, 6) for x in interval(np.arange(101.0))]
    [2.5, 97.5]
    """
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return [float("nan"), float("nan")]
    tail = 100.0 * (1.0 - level) / 2
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(scores, labels, enrol=None, test=None, n_resamples=1000, seed=0):
    """``EER_ci95`` and ``minDCF_p0.01_ci95`` of one scored list, with how they were drawn.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> names = [f"s{i % 20}/u{i}" for i in range(400)]
    >>> labels = rng.integers(0, 2, 400)
    >>> scores = labels + rng.normal(0, 1, 400)
    >>> ci = bootstrap_intervals(scores, labels, names, names[::-1], n_resamples=200)
    >>> ci["ci_method"], ci["EER_ci95"][0] < ci["EER_ci95"][1]
    ('speaker', True)
    """
    resampler = Resampler(labels, enrol, test, n_resamples, seed)
    eer, dcf = bootstrap_draws(scores, labels, resampler)
    return dict(resampler.describe(), **{"EER_ci95": interval(eer), "minDCF_p0.01_ci95": interval(dcf)})


def verdict(low, high):
    """``better`` when an interval of B - A lies below 0 (lower error), ``worse`` above,
    ``not resolved`` when it covers 0.

    Example
    -------
    >>> verdict(-1.0, -0.1), verdict(0.2, 0.5), verdict(-0.3, 0.2)
    ('better', 'worse', 'not resolved')
    """
    if high < 0:
        return "better"
    if low > 0:
        return "worse"
    return "not resolved"


def paired_difference(eer_a, eer_b, draws_a, draws_b, level=0.95):
    """EER of B minus EER of A with its paired interval (the same resamples for both).

    Arguments
    ---------
    eer_a, eer_b : float
        EERs (percent) on the whole list.
    draws_a, draws_b : np.ndarray
        Their bootstrap EERs from the same :class:`Resampler`.

    Returns
    -------
    dict
        ``EER_A``, ``EER_B``, ``difference`` (B - A, points), ``difference_ci95``,
        ``half_width`` (the smallest difference this list can resolve) and ``verdict``
        (of B against A).

    Example
    -------
    >>> d = paired_difference(5.0, 4.0, np.full(9, 5.0), np.linspace(3.5, 4.5, 9))
    >>> d["difference"], d["difference_ci95"], d["verdict"]
    (-1.0, [-1.475, -0.525], 'better')
    """
    diff = np.asarray(draws_b, dtype=np.float64) - np.asarray(draws_a, dtype=np.float64)
    low, high = interval(diff, level)
    return {
        "EER_A": float(eer_a),
        "EER_B": float(eer_b),
        "difference": float(eer_b - eer_a),
        "difference_ci95": [low, high],
        "half_width": float((high - low) / 2),
        "verdict": verdict(low, high),
    }


def pooled_difference(folds, seed=0, level=0.95):
    """Mean EER difference of B against A over training seeds and folds, with an interval
    that holds both the seed and the speaker variation.

    Within a fold every seed's two systems were scored on the same list and bootstrapped
    with the same speaker resamples. Each resample ``r`` also redraws the seeds with
    replacement (a two-level bootstrap: speakers, then seeds) and takes the mean difference
    over the drawn seeds; the folds (disjoint test speakers, independent) are averaged
    resample by resample.

    Arguments
    ---------
    folds : list of dict
        One per fold: ``eer_a`` and ``eer_b`` (lists over seeds, percent) and ``draws_a``,
        ``draws_b`` (``(n_seeds, n_resamples)`` bootstrap EERs); A and B of seed ``i``
        are paired (e.g. supervised from scratch and MoCo-initialised with seed ``i``).
    seed : int
        Seed of the seed redraw.

    Returns
    -------
    dict
        ``EER_A`` / ``EER_B`` (means over folds and seeds), ``difference``,
        ``difference_ci95``, ``half_width``, ``verdict``, ``n_seeds``, ``n_folds``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> fold = {"eer_a": [5.0, 5.2, 4.8], "eer_b": [4.0, 4.3, 3.9],
    ...         "draws_a": 5 + rng.normal(0, .3, (3, 500)), "draws_b": 4 + rng.normal(0, .3, (3, 500))}
    >>> d = pooled_difference([fold])
    >>> round(d["difference"], 2), d["verdict"], d["n_seeds"]
    (-0.93, 'better', 3)
    """
    rng = np.random.default_rng(seed)
    pooled, point, n_seeds = None, [], []
    for fold in folds:
        da = np.atleast_2d(np.asarray(fold["draws_a"], dtype=np.float64))
        db = np.atleast_2d(np.asarray(fold["draws_b"], dtype=np.float64))
        if da.shape != db.shape:
            raise ValueError(f"paired draws differ in shape: {da.shape} vs {db.shape}")
        n, n_res = da.shape
        if len(fold["eer_a"]) != n or len(fold["eer_b"]) != n:
            raise ValueError("one EER per seed and system is needed beside the draws")
        pick = rng.integers(0, n, size=(n_res, n))  # seeds redrawn for each resample
        diff = db - da
        fold_draws = diff[pick, np.arange(n_res)[:, None]].mean(axis=1)
        pooled = fold_draws if pooled is None else pooled + fold_draws
        point.append(np.mean(fold["eer_b"]) - np.mean(fold["eer_a"]))
        n_seeds.append(n)
    pooled = pooled / len(folds)
    eer_a = float(np.mean([np.mean(f["eer_a"]) for f in folds]))
    eer_b = float(np.mean([np.mean(f["eer_b"]) for f in folds]))
    low, high = interval(pooled, level)
    return {
        "EER_A": eer_a,
        "EER_B": eer_b,
        "difference": float(np.mean(point)),
        "difference_ci95": [low, high],
        "half_width": float((high - low) / 2),
        "verdict": verdict(low, high),
        "n_seeds": int(min(n_seeds)),
        "n_folds": len(folds),
    }


def pooled_interval(folds, seed=0, level=0.95):
    """One system's mean EER over seeds and folds with the same two-level interval.

    ``folds``: one dict per fold with ``eer`` (list over seeds) and ``draws``
    (``(n_seeds, n_resamples)``). Returns ``EER`` (mean), ``EER_ci95``, ``EER_std_seeds``
    (standard deviation over the seeds of the fold-mean EER; 0 with one seed).

    Example
    -------
    >>> d = pooled_interval([{"eer": [4.0, 5.0], "draws": np.full((2, 100), 4.5)}])
    >>> d["EER"], d["EER_ci95"], round(d["EER_std_seeds"], 3)
    (4.5, [4.5, 4.5], 0.707)
    """
    zero = [
        dict(
            eer_a=[0.0] * len(f["eer"]),
            eer_b=f["eer"],
            draws_a=np.zeros_like(np.atleast_2d(f["draws"]), dtype=np.float64),
            draws_b=f["draws"],
        )
        for f in folds
    ]
    d = pooled_difference(zero, seed, level)
    per_seed = np.mean(
        [np.asarray(f["eer"], dtype=np.float64) for f in folds if len(f["eer"]) == len(folds[0]["eer"])],
        axis=0,
    )
    std = float(np.std(per_seed, ddof=1)) if per_seed.size > 1 else 0.0
    return {"EER": d["EER_B"], "EER_ci95": d["difference_ci95"], "EER_std_seeds": std}


def compare_scores(scores_a, scores_b, labels, enrol=None, test=None, n_resamples=1000, seed=0):
    """Paired comparison of two systems' scores of one trial list (same order).

    Both are resampled with the same speakers (:class:`Resampler`); returns
    :func:`paired_difference`'s dict (B - A) with each system's ``EER_A_ci95`` /
    ``EER_B_ci95`` and the resampling used.

    Example
    -------
    >>> rng = np.random.default_rng(1)
    >>> names = [f"s{i % 30}/u{i}" for i in range(3000)]
    >>> labels = rng.integers(0, 2, 3000)
    >>> noise = rng.normal(0, 1, 3000)
    >>> d = compare_scores(labels + noise, 2 * labels + noise, labels, names, names[::-1], 300)
    >>> d["verdict"], d["difference"] < 0
    ('better', True)
    """
    from speechbrain_moco.verification.metrics import compute_eer

    resampler = Resampler(labels, enrol, test, n_resamples, seed)
    draws_a, _ = bootstrap_draws(scores_a, labels, resampler)
    draws_b, _ = bootstrap_draws(scores_b, labels, resampler)
    eer_a = 100.0 * compute_eer(scores_a, labels)[0]
    eer_b = 100.0 * compute_eer(scores_b, labels)[0]
    out = paired_difference(eer_a, eer_b, draws_a, draws_b)
    out.update(EER_A_ci95=interval(draws_a), EER_B_ci95=interval(draws_b), **resampler.describe())
    return out
