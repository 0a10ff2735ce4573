"""Pseudo-label stage: clustering recovers speakers, manifests keep every row."""

import csv

import numpy as np
import pytest

from data_prep.folder_prepare import prepare_folder
from speechbrain_moco.dataio import read_csv
from speechbrain_moco.pseudo_labels import (
    cluster_pseudo_labels,
    clustering_quality,
    estimate_n_clusters,
    pseudo_label_manifests,
    purity_filter,
    relabel,
)


def speakers(n_spk=20, per_spk=15, dim=32, spread=0.15, seed=0):
    """Well-separated synthetic speaker embeddings and their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_spk, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = spread * rng.standard_normal((n_spk * per_spk, dim)) / np.sqrt(dim)
    x = np.repeat(centres, per_spk, axis=0) + noise
    return x.astype(np.float32), np.repeat(np.arange(n_spk), per_spk)


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_clustering_recovers_well_separated_speakers(method):
    x, true = speakers()
    labels = cluster_pseudo_labels(x, 20, method=method, seed=0)
    quality = clustering_quality(labels, true)
    assert quality["purity"] > 0.95 and quality["inverse_purity"] > 0.95
    assert quality["nmi"] > 0.95
    assert quality["n_clusters"] == 20 and quality["n_true"] == 20


def test_estimated_number_of_clusters_matches_speakers():
    x, _ = speakers(n_spk=12, per_spk=10)
    k, scores = estimate_n_clusters(x, candidates=[4, 8, 12, 16, 24], seed=0)
    assert k == 12
    assert scores[12] == max(scores.values())
    with pytest.raises(ValueError, match="too few"):
        estimate_n_clusters(x[:3])


def test_clustering_quality_values():
    q = clustering_quality([0, 0, 0, 1], ["a", "a", "b", "b"])
    assert q["purity"] == pytest.approx(0.75)  # cluster 0: 2 of 3 a, cluster 1: 1 b
    assert q["inverse_purity"] == pytest.approx(0.75)
    assert 0.0 < q["nmi"] < 1.0
    assert clustering_quality([1, 1, 0, 0], ["a", "a", "b", "b"])["nmi"] == pytest.approx(1.0)


def test_purity_filter_keeps_closest_fraction_and_drops_small_clusters():
    x, true = speakers(n_spk=3, per_spk=10, spread=0.5)
    labels = true.copy()
    labels[0] = 3  # a singleton cluster
    keep = purity_filter(x, labels, keep_ratio=0.5, min_cluster_size=2)
    assert not keep[0]
    for c, size in ((0, 9), (1, 10), (2, 10)):
        members = np.flatnonzero(labels == c)
        assert keep[members].sum() == int(np.ceil(0.5 * size))
        # the kept members are the ones closest to the cluster centre
        xn = x[members] / np.linalg.norm(x[members], axis=1, keepdims=True)
        centre = xn.mean(0) / np.linalg.norm(xn.mean(0))
        cos = xn @ centre
        assert cos[keep[members]].min() >= cos[~keep[members]].max()
    assert purity_filter(x, labels, keep_ratio=1.0, min_cluster_size=1).all()
    with pytest.raises(ValueError, match="keep_ratio"):
        purity_filter(x, labels, keep_ratio=0.0)


def test_relabel_changes_only_spk_id():
    rows = [{"ID": "a", "duration": "1.50", "wav": "$data_root/s/a.wav", "spk_id": "s"}]
    out = relabel(rows, np.array([7]))
    assert out == [{"ID": "a", "duration": "1.50", "wav": "$data_root/s/a.wav", "spk_id": "pl00007"}]
    assert rows[0]["spk_id"] == "s"  # input untouched
    with pytest.raises(ValueError):
        relabel(rows, np.array([1, 2]))


def test_pseudo_label_manifest_keeps_every_row(tone_corpus, tmp_path):
    prep = prepare_folder(tone_corpus, tmp_path / "m", valid_ratio=0.2, seed=1)
    train, fields = read_csv(prep["train"])
    valid, _ = read_csv(prep["valid"])
    x, _ = speakers(n_spk=len(train) + len(valid), per_spk=1)  # any embeddings
    report = pseudo_label_manifests(
        x, train, valid, fields, tmp_path / "pl", n_clusters=3, keep_ratio=0.7, seed=0
    )
    for name, source in (("train_all", prep["train"]), ("valid_all", prep["valid"])):
        with open(source, newline="") as f:
            before = list(csv.reader(f))
        with open(tmp_path / "pl" / f"{name}.csv", newline="") as f:
            after = list(csv.reader(f))
        assert len(after) == len(before) and after[0] == before[0]
        spk = before[0].index("spk_id")
        for old, new in zip(before[1:], after[1:]):
            assert old[:spk] + old[spk + 1 :] == new[:spk] + new[spk + 1 :]
            assert new[spk].startswith("pl")
    kept, _ = read_csv(tmp_path / "pl" / "train.csv")
    all_rows, _ = read_csv(tmp_path / "pl" / "train_all.csv")
    assert len(kept) == report["train_kept"] < len(all_rows)
    assert all(row in all_rows for row in kept)
    valid_kept, _ = read_csv(tmp_path / "pl" / "valid.csv")
    assert {r["spk_id"] for r in valid_kept} <= {r["spk_id"] for r in kept}
    assert set(report["quality_all"]) >= {"nmi", "purity"}
    assert (tmp_path / "pl" / "clusters.json").is_file()
