"""Score normalisation: vectorised == naive per-trial loop; hand-made values."""

import math

import numpy as np
import pytest
import torch

from speechbrain_moco.verification import PLDAScorer
from speechbrain_moco.verification.score_norm import cohort_stats, normalize_scores

COHORT = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
ENROL = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # cohort cosines 1, 1, 0, -1
TEST = torch.tensor([[0.0, 2.0]], dtype=torch.float64)  # cohort cosines 0, 0, 1, 0
SCORE = torch.tensor([0.8], dtype=torch.float64)


def naive_asnorm(scores, enrol, test, cohort, top_k):
    """Per-trial loop, numpy, the textbook definition (unbiased std)."""
    cohort = cohort.numpy()

    def stats(x):
        sims = [float(x @ c / (np.linalg.norm(x) * np.linalg.norm(c))) for c in cohort]
        top = np.sort(np.asarray(sims))[::-1][:top_k]
        return top.mean(), top.std(ddof=1)

    out = []
    for s, e, t in zip(scores.numpy(), enrol.numpy(), test.numpy()):
        (me, se), (mt, st) = stats(e), stats(t)
        out.append(0.5 * ((s - me) / se + (s - mt) / st))
    return np.asarray(out)


def test_vectorised_asnorm_equals_naive_loop():
    gen = torch.Generator().manual_seed(0)
    utts = torch.randn(30, 8, generator=gen, dtype=torch.float64)
    cohort = torch.randn(200, 8, generator=gen, dtype=torch.float64)
    e_idx = torch.randint(0, 30, (120,), generator=gen)
    t_idx = torch.randint(0, 30, (120,), generator=gen)
    scores = torch.randn(120, generator=gen, dtype=torch.float64)
    expected = naive_asnorm(scores, utts[e_idx], utts[t_idx], cohort, top_k=25)
    paired = normalize_scores(scores, utts[e_idx], utts[t_idx], cohort, "asnorm", top_k=25, chunk_size=7)
    indexed = normalize_scores(
        scores, utts, utts, cohort, "asnorm", top_k=25, enrol_idx=e_idx, test_idx=t_idx
    )
    np.testing.assert_allclose(paired.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(indexed.numpy(), expected, rtol=0, atol=1e-6)


def test_cohort_statistics_are_computed_once_per_unique_utterance(monkeypatch):
    import speechbrain_moco.verification.score_norm as sn

    calls = []
    real = sn.cohort_stats
    monkeypatch.setattr(sn, "cohort_stats", lambda emb, *a, **k: calls.append(len(emb)) or real(emb, *a, **k))
    utts = torch.randn(5, 4, dtype=torch.float64)
    e_idx, t_idx = torch.tensor([0, 0, 1, 2, 3] * 4), torch.tensor([4, 3, 2, 1, 0] * 4)
    normalize_scores(torch.zeros(20), utts[e_idx], utts[t_idx], torch.randn(9, 4).double(), "snorm")
    assert calls == [5]


def test_znorm_tnorm_snorm_hand_made():
    # enrol: cohort cosines 1, 1, 0, -1 -> mean 0.25, unbiased var 2.75 / 3
    # test:  cohort cosines 0, 0, 1, 0  -> mean 0.25, unbiased var 0.75 / 3
    z = (0.8 - 0.25) / math.sqrt(2.75 / 3)
    t = (0.8 - 0.25) / math.sqrt(0.75 / 3)
    for method, value in (("znorm", z), ("tnorm", t), ("snorm", 0.5 * (z + t))):
        out = normalize_scores(SCORE, ENROL, TEST, COHORT, method=method)
        assert out.item() == pytest.approx(value, abs=1e-12), method
    # s-norm is AS-norm with the whole cohort
    assert normalize_scores(SCORE, ENROL, TEST, COHORT, "asnorm", top_k=10).item() == pytest.approx(
        0.5 * (z + t), abs=1e-12
    )


def test_asnorm_hand_made():
    # top 3: enrol 1, 1, 0 (mean 2/3); test 1, 0, 0 (mean 1/3); both std sqrt(1/3)
    std = math.sqrt(1 / 3)
    value = 0.5 * ((0.8 - 2 / 3) / std + (0.8 - 1 / 3) / std)
    out = normalize_scores(SCORE, ENROL, TEST, COHORT, "asnorm", top_k=3)
    assert out.item() == pytest.approx(value, abs=1e-12)


def test_cohort_scoring_with_a_fitted_backend():
    gen = torch.Generator().manual_seed(1)
    train = torch.randn(300, 6, generator=gen, dtype=torch.float64)
    labels = np.repeat(np.arange(30), 10)
    plda = PLDAScorer().fit(train, labels)
    utts = train[:4]
    mean, std = cohort_stats(utts, train[100:], top_k=20, scorer=plda, chunk_size=3)
    top = plda.score_matrix(utts, train[100:]).topk(20, dim=1).values
    torch.testing.assert_close(mean, top.mean(1))
    torch.testing.assert_close(std, top.std(1))


def test_errors():
    with pytest.raises(ValueError, match="unknown score normalisation"):
        normalize_scores(SCORE, ENROL, TEST, COHORT, method="xnorm")
    with pytest.raises(ValueError, match="top_k"):
        normalize_scores(SCORE, ENROL, TEST, COHORT, top_k=1)
    with pytest.raises(ValueError, match="both"):
        normalize_scores(SCORE, ENROL, TEST, COHORT, enrol_idx=[0])
