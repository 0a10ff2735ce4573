"""Scoring back-ends on synthetic Gaussian speakers."""

import numpy as np
import pytest
import torch
from speechbrain.processing.PLDA_LDA import Ndx, StatObject_SB, fast_PLDA_scoring

from speechbrain_moco.pseudo_labels import cluster_pseudo_labels
from speechbrain_moco.verification import CosineScorer, PLDAScorer
from speechbrain_moco.verification.metrics import compute_eer
from speechbrain_moco.verification.plda import make_stats

DIM = 20


def gaussian_speakers(n_spk, n_utt, rng, rotation, offset=0.0):
    """Speaker means N(0, I); within-speaker noise with 4 large directions."""
    means = rng.normal(size=(n_spk, DIM)) + offset
    scale = np.full(DIM, 0.3)
    scale[:4] = 3.0
    noise = (rng.normal(size=(n_spk, n_utt, DIM)) * scale) @ rotation.T
    x = (means[:, None, :] + noise).reshape(-1, DIM)
    return torch.tensor(x, dtype=torch.float32), np.repeat(np.arange(n_spk), n_utt)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    train, train_labels = gaussian_speakers(80, 10, rng, rotation)
    test, test_labels = gaussian_speakers(25, 6, rng, rotation)
    i, j = np.triu_indices(len(test), 1)
    return train, train_labels, test[i], test[j], (test_labels[i] == test_labels[j]).astype(int)


def test_plda_beats_cosine_with_anisotropic_within_speaker_noise(data):
    train, train_labels, enrol, test, labels = data
    cos_eer, _ = compute_eer(CosineScorer().fit(train).score(enrol, test), labels)
    plda = PLDAScorer().fit(train, train_labels)
    plda_eer, _ = compute_eer(plda.score(enrol, test), labels)
    lda_eer, _ = compute_eer(PLDAScorer(lda_dim=10).fit(train, train_labels).score(enrol, test), labels)
    assert cos_eer > 0.2
    assert plda_eer < 0.05 and lda_eer < 0.05
    assert plda_eer < cos_eer / 4


def test_plda_paired_scores_equal_speechbrain_fast_scoring(data):
    train, train_labels, enrol, test, _ = data
    plda = PLDAScorer(lda_dim=12).fit(train, train_labels)
    e, t = enrol[:5], test[:7]

    def stat(x, prefix):
        ids = np.array([f"{prefix}{i}" for i in range(len(x))], dtype=object)
        none = np.array([None] * len(x))
        return StatObject_SB(
            modelset=ids, segset=ids, start=none, stop=none, stat0=np.ones((len(x), 1)), stat1=plda.project(x)
        )

    ref = fast_PLDA_scoring(
        stat(e, "e"),
        stat(t, "t"),
        Ndx(models=np.array([f"e{i}" for i in range(5)]), testsegs=np.array([f"t{i}" for i in range(7)])),
        plda.plda.mean,
        plda.plda.F,
        plda.plda.Sigma,
    ).scoremat
    matrix = plda.score_matrix(e.double(), t.double())
    np.testing.assert_allclose(matrix.numpy(), ref, rtol=1e-9, atol=1e-8)
    ii, jj = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    paired = plda.score(e[ii.ravel()].double(), t[jj.ravel()].double())
    np.testing.assert_allclose(paired.numpy(), ref.ravel(), rtol=1e-9, atol=1e-8)


def test_vectorised_stats_sum_equals_speechbrain(data):
    train, train_labels, *_ = data
    ours, counts = make_stats(train[:100], train_labels[:100]).sum_stat_per_model()
    ref, ref_counts = StatObject_SB.sum_stat_per_model(make_stats(train[:100], train_labels[:100]))
    assert list(ours.modelset) == list(ref.modelset)
    np.testing.assert_allclose(ours.stat1, ref.stat1)
    np.testing.assert_allclose(ours.stat0, ref.stat0)
    np.testing.assert_array_equal(counts, ref_counts)


def test_cosine_mean_subtraction_removes_a_shared_offset():
    rng = np.random.default_rng(1)
    rotation = np.eye(DIM)
    train, _ = gaussian_speakers(40, 5, rng, rotation, offset=8.0)
    test, test_labels = gaussian_speakers(20, 4, rng, rotation, offset=8.0)
    i, j = np.triu_indices(len(test), 1)
    labels = test_labels[i] == test_labels[j]
    raw, _ = compute_eer(CosineScorer().fit(train).score(test[i], test[j]), labels)
    centred, _ = compute_eer(CosineScorer(True).fit(train).score(test[i], test[j]), labels)
    assert centred < raw
    with pytest.raises(RuntimeError):
        CosineScorer(mean_subtraction=True).score(test[:1], test[1:2])


@pytest.mark.parametrize(
    "scorer", [CosineScorer(), CosineScorer(mean_subtraction=True), PLDAScorer(lda_dim=8)]
)
def test_score_matrix_diagonal_equals_paired_scores(data, scorer):
    train, train_labels, enrol, test, _ = data
    scorer.fit(train, train_labels)
    matrix = scorer.score_matrix(enrol[:6], test[:6])
    assert matrix.shape == (6, 6)
    torch.testing.assert_close(
        torch.diagonal(matrix), scorer.score(enrol[:6], test[:6]), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_pseudo_labels_recover_separated_speakers(method):
    rng = np.random.default_rng(2)
    n_spk, n_utt, dim = 10, 20, 16
    centres = rng.normal(size=(n_spk, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[:, None, :] + 0.1 * rng.normal(size=(n_spk, n_utt, dim))
    x = x.reshape(-1, dim) * rng.uniform(0.5, 2.0, size=(n_spk * n_utt, 1))  # norms vary
    truth = np.repeat(np.arange(n_spk), n_utt)
    labels = cluster_pseudo_labels(torch.tensor(x), n_spk, method=method)
    assert labels.shape == truth.shape and set(labels) <= set(range(n_spk))
    purity = sum(np.bincount(truth[labels == k]).max() for k in np.unique(labels)) / truth.size
    assert purity > 0.95


def test_plda_on_pseudo_labels_needs_no_speaker_labels():
    rng = np.random.default_rng(3)
    rotation = np.eye(DIM)
    train, _ = gaussian_speakers(30, 10, rng, rotation)
    train = train * 0.2 + torch.tensor(rng.normal(size=(30, DIM)) * 3, dtype=torch.float32).repeat_interleave(
        10, dim=0
    )
    scorer = PLDAScorer(n_clusters=30, cluster_method="agglomerative").fit(train)
    assert scorer.score(train[:3], train[3:6]).shape == (3,)
    with pytest.raises(ValueError, match="train_labels or n_clusters"):
        PLDAScorer().fit(train)
    with pytest.raises(ValueError, match="unknown clustering"):
        cluster_pseudo_labels(train, 3, method="spectral")
