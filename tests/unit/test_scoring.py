"""Tests of the cosine scorer, trial indexing, and score / metric files."""

import json

import numpy as np
import pytest
import torch

from speechbrain_moco.verification import (
    cosine_score,
    read_scores,
    stats_embedding,
    trial_index,
    write_metrics,
    write_scores,
)


def _manual_cosine(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def test_cosine_score_manual_formula():
    torch.manual_seed(0)
    enrol, test = torch.randn(7, 5), torch.randn(7, 5)
    scores = cosine_score(enrol, test)
    assert scores.shape == (7,)
    torch.testing.assert_close(scores, _manual_cosine(enrol, test))
    torch.testing.assert_close(cosine_score(3 * enrol, test), scores)
    torch.testing.assert_close(cosine_score(enrol, enrol), torch.ones(7))


def test_cosine_score_mean_subtraction():
    torch.manual_seed(1)
    enrol, test, mean = torch.randn(4, 3), torch.randn(4, 3), torch.randn(3)
    scores = cosine_score(enrol, test, mean=mean)
    torch.testing.assert_close(scores, _manual_cosine(enrol - mean, test - mean))
    # a shared offset is removed by subtracting it
    torch.testing.assert_close(cosine_score(enrol + mean, test + mean, mean=mean), cosine_score(enrol, test))


def test_cosine_score_shape_mismatch():
    with pytest.raises(ValueError):
        cosine_score(torch.randn(3, 2), torch.randn(2, 2))


def test_trial_index_scores_every_trial_like_pairwise_cosine():
    torch.manual_seed(2)
    ids = [f"u{i}" for i in range(5)]
    emb = torch.randn(5, 6)
    trials = [(1, "u0", "u1"), (0, "u2", "u0"), (1, "u3", "u3"), (0, "u4", "u2")]
    e_idx, t_idx = trial_index(trials, ids)
    assert e_idx.tolist() == [0, 2, 3, 4] and t_idx.tolist() == [1, 0, 3, 2]
    mean = torch.randn(6)
    for m in (None, mean):
        scores = cosine_score(emb[e_idx], emb[t_idx], mean=m)
        expected = torch.stack(
            [cosine_score(emb[int(e)][None], emb[int(t)][None], mean=m)[0] for e, t in zip(e_idx, t_idx)]
        )
        torch.testing.assert_close(scores, expected)
    assert float(cosine_score(emb[e_idx], emb[t_idx])[2]) == pytest.approx(1.0)


def test_trial_index_missing_id():
    with pytest.raises(KeyError, match="missing_utt"):
        trial_index([(1, "a", "missing_utt")], ["a"])


def test_write_read_scores_round_trip(tmp_path):
    trials = [(1, "spk1/a", "spk1/b"), (0, "spk1/a", "spk2/c"), (0, "x", "y")]
    scores = torch.tensor([0.8123456789, -0.25, 0.0])
    path = tmp_path / "scores.txt"
    write_scores(path, trials, scores)
    lines = path.read_text().splitlines()
    assert lines[0] == f"spk1/a spk1/b {float(scores[0])!r} 1"  # exact: thresholds read back decide alike
    enrol, test, read, labels = read_scores(path)
    assert enrol == ["spk1/a", "spk1/a", "x"]
    assert test == ["spk1/b", "spk2/c", "y"]
    np.testing.assert_array_equal(read, scores.numpy().astype(np.float64))
    assert read.dtype == np.float64
    np.testing.assert_array_equal(labels, [1, 0, 0])
    with pytest.raises(ValueError):
        write_scores(path, trials, scores[:2])


def test_write_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics(path, {"n_trials": 3, "EER": 12.5})
    text = path.read_text()
    assert json.loads(text) == {"EER": 12.5, "n_trials": 3}
    assert text.index('"EER"') < text.index('"n_trials"')
    assert '\n  "EER"' in text


def test_stats_embedding_values():
    torch.manual_seed(3)
    feats = torch.randn(2, 10, 4)
    out = stats_embedding(feats)
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[:, :4], feats.mean(dim=1))
    torch.testing.assert_close(out[:, 4:], feats.std(dim=1, unbiased=False))


def test_stats_embedding_ignores_padding():
    torch.manual_seed(4)
    feats = torch.randn(3, 10, 4)
    lengths = torch.tensor([1.0, 0.6, 0.3])
    out = stats_embedding(feats, lengths)
    for i, n in enumerate([10, 6, 3]):
        valid = feats[i, :n]
        torch.testing.assert_close(out[i, :4], valid.mean(dim=0))
        torch.testing.assert_close(out[i, 4:], valid.std(dim=0, unbiased=False))
    padded = feats.clone()
    padded[1, 6:] = 1e6
    padded[2, 3:] = float("nan")
    torch.testing.assert_close(stats_embedding(padded, lengths), out)


def test_stats_embedding_single_frame():
    feats = torch.tensor([[[2.0, -1.0], [9.0, 9.0]]])
    out = stats_embedding(feats, torch.tensor([0.5]))
    torch.testing.assert_close(out, torch.tensor([[2.0, -1.0, 0.0, 0.0]]))
