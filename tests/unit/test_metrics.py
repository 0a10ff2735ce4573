"""Tests of speechbrain_moco.metrics against hand-worked cases and SpeechBrain."""

import json

import numpy as np
import pytest
import torch
from speechbrain.utils.metric_stats import EER, minDCF

from speechbrain_moco.verification.metrics import (
    compute_eer,
    compute_min_dcf,
    det_curve,
    verification_metrics,
)


def _random_trials(seed, ties):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 150))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    if ties:
        scores = rng.integers(0, 12, n) / 5.0
    else:
        scores = rng.normal(size=n) + labels
    return torch.tensor(scores, dtype=torch.float32), torch.tensor(labels)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
def test_eer_matches_speechbrain(seed, ties):
    scores, labels = _random_trials(seed, ties)
    pos, neg = scores[labels == 1], scores[labels == 0]
    ref_eer, ref_thr = EER(pos, neg)
    eer, thr = compute_eer(scores, labels)
    assert eer == pytest.approx(ref_eer, abs=1e-6)
    assert thr == pytest.approx(ref_thr, abs=1e-6)
    # numpy input gives the same answer
    assert compute_eer(scores.numpy(), labels.numpy()) == (eer, thr)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.3])
def test_min_dcf_matches_speechbrain(seed, ties, p_target):
    scores, labels = _random_trials(seed, ties)
    pos, neg = scores[labels == 1], scores[labels == 0]
    ref, _ = minDCF(pos, neg, p_target=p_target)  # not normalised
    dcf, thr = compute_min_dcf(scores, labels, p_target=p_target)
    assert dcf * min(p_target, 1 - p_target) == pytest.approx(ref, abs=1e-6)
    # the returned threshold reaches the minimum cost
    s, lab = scores.double().numpy(), labels.numpy()
    p_miss = np.mean(s[lab == 1] <= thr)
    p_fa = np.mean(s[lab == 0] > thr)
    cost = (p_target * p_miss + (1 - p_target) * p_fa) / min(p_target, 1 - p_target)
    assert cost == pytest.approx(dcf, abs=1e-9)


def test_min_dcf_costs_and_normalisation():
    scores, labels = _random_trials(3, False)
    pos, neg = scores[labels == 1], scores[labels == 0]
    ref, _ = minDCF(pos, neg, c_miss=10.0, c_fa=1.0, p_target=0.01)
    dcf, _ = compute_min_dcf(scores, labels, 0.01, c_miss=10.0, c_fa=1.0)
    assert dcf * min(10.0 * 0.01, 0.99) == pytest.approx(ref, abs=1e-6)
    # normalised minDCF never exceeds the trivial reject-all system
    assert dcf <= 1.0 + 1e-12


def test_perfect_and_inverted():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    assert compute_eer(scores, labels) == (0.0, 0.3)
    assert compute_min_dcf(scores, labels) == (0.0, 0.3)
    eer, _ = compute_eer(scores, 1 - labels)
    assert eer == 1.0
    # all scores equal: one operating point, reject all
    assert compute_eer(np.zeros(4), labels[1:5]) == (0.5, 0.0)


def test_four_trials_by_hand():
    # sorted: 0.1 N, 0.2 T, 0.6 N, 0.9 T
    # t=0.1: P_miss 0,   P_fa 1/2   t=0.2: P_miss 1/2, P_fa 1/2
    # t=0.6: P_miss 1/2, P_fa 0     t=0.9: P_miss 1,   P_fa 0
    scores = torch.tensor([0.9, 0.2, 0.6, 0.1])
    labels = torch.tensor([1, 1, 0, 0])
    eer, thr = compute_eer(scores, labels)
    assert eer == 0.5 and thr == pytest.approx(0.2)
    # p=0.5: costs 0.25, 0.5, 0.25, 0.5; normaliser 0.5 -> 0.5 at t=0.1 (first)
    dcf, thr = compute_min_dcf(scores, labels, p_target=0.5)
    assert dcf == pytest.approx(0.5) and thr == pytest.approx(0.1)
    # p=0.01: costs .495, .5, .005, .01 over normaliser .01 -> 0.5 at t=0.6
    dcf, thr = compute_min_dcf(scores, labels, p_target=0.01)
    assert dcf == pytest.approx(0.5) and thr == pytest.approx(0.6)
    p_fa, p_miss = det_curve(scores, labels)
    np.testing.assert_allclose(p_fa, [1, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(p_miss, [0, 0, 0.5, 0.5, 1])


def test_det_curve_monotone_with_ties():
    scores, labels = _random_trials(5, True)
    p_fa, p_miss = det_curve(scores, labels)
    assert len(p_fa) == len(torch.unique(scores)) + 1
    assert np.all(np.diff(p_fa) <= 0) and np.all(np.diff(p_miss) >= 0)
    assert (p_fa[0], p_miss[0], p_fa[-1], p_miss[-1]) == (1, 0, 0, 1)


def test_verification_metrics_keys_and_types():
    scores, labels = _random_trials(1, True)
    metrics = verification_metrics(scores, labels)
    assert set(metrics) == {
        "EER",
        "EER_threshold",
        "minDCF_p0.01",
        "minDCF_p0.05",
        "n_trials",
        "n_target",
        "n_nontarget",
    }
    for key in ("EER", "EER_threshold", "minDCF_p0.01", "minDCF_p0.05"):
        assert type(metrics[key]) is float
    for key in ("n_trials", "n_target", "n_nontarget"):
        assert type(metrics[key]) is int
    assert metrics["EER"] == pytest.approx(100 * compute_eer(scores, labels)[0])
    assert metrics["minDCF_p0.05"] == compute_min_dcf(scores, labels, 0.05)[0]
    assert metrics["n_target"] == int(labels.sum())
    assert metrics["n_trials"] == len(labels)
    assert metrics["n_target"] + metrics["n_nontarget"] == len(labels)
    json.dumps(metrics)


@pytest.mark.parametrize("fn", [compute_eer, compute_min_dcf, det_curve, verification_metrics])
def test_single_class_raises(fn):
    with pytest.raises(ValueError):
        fn([0.1, 0.5, 0.3], [1, 1, 1])
    with pytest.raises(ValueError):
        fn(torch.tensor([0.1, 0.5]), torch.tensor([0, 0]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        compute_eer([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError):
        compute_eer([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError):
        compute_eer([0.1, 0.2], [0, 2])


def test_ten_million_trials_within_30_s_and_2_gb():
    """The verification issue's bound for Vox1-E/H-sized lists (sort-based metrics)."""
    import time
    import tracemalloc

    rng = np.random.default_rng(0)
    labels = (rng.random(10_000_000) < 0.1).astype(np.int8)
    scores = (rng.standard_normal(10_000_000) + 2.0 * labels).astype(np.float32)
    tracemalloc.start()
    start = time.perf_counter()
    metrics = verification_metrics(scores, labels)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 30 and peak < 2 * 1024**3, (elapsed, peak)
    assert metrics["n_trials"] == 10_000_000
    assert 15.0 < metrics["EER"] < 16.5  # d' = 2 between unit Gaussians: EER = Phi(-1) = 15.9 %
