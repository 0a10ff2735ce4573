"""Pseudo-labelled manifests: the training (and validation) rows of a run, relabelled with
pseudo speakers, filtered for purity, written for the supervised recipe.

- ``train_all.csv`` / ``valid_all.csv``: every row of the run's training /
  validation manifest, byte for byte except ``spk_id`` (the pseudo label);
- ``train.csv`` / ``valid.csv``: the rows kept by the purity filter (and, for
  validation, only pseudo speakers that training has): what the supervised
  recipe trains on (``--train_annotation=PL/train.csv --valid_annotation=PL/valid.csv``);
- ``clusters.json``: sizes, timings, and quality against the manifest's own
  ``spk_id`` (NMI, purity) when asked: a report only, never used for training.
"""

import json
import os
import time

import numpy as np
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.manifest import write_csv
from speechbrain_moco.pseudo_labels.clustering import (
    cluster_pseudo_labels,
    clustering_quality,
    estimate_n_clusters,
    overcluster_merge,
    purity_filter,
    spectral_clusters,
)

logger = get_logger(__name__)
SPECTRAL_MAX_ROWS = 5000  # cluster_method auto: spectral up to this many utterances (dense, O(N^3))


def relabel(rows, labels, prefix="pl"):
    """Copies of ``rows`` whose ``spk_id`` is the pseudo label (nothing else changes)."""
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    width = max(5, len(str(int(np.max(labels)))) if len(labels) else 5)
    return [dict(row, spk_id=f"{prefix}{int(lab):0{width}d}") for row, lab in zip(rows, labels)]


def pseudo_label_manifests(
    x,
    train_rows,
    valid_rows,
    fields,
    out_folder,
    n_clusters=None,
    method="kmeans",
    keep_ratio=1.0,
    min_cluster_size=2,
    seed=0,
    report_labels=True,
    overcluster_factor=None,
):
    """Cluster ``x`` (train rows, then valid rows) and write the manifests. With
    ``overcluster_factor`` the count (given or estimated) is reached by over-clustering then
    merging (:func:`~speechbrain_moco.pseudo_labels.clustering.overcluster_merge`).

    Returns the ``clusters.json`` report (also written to ``out_folder``).
    """
    n_train = len(train_rows)
    if x.shape[0] != n_train + len(valid_rows):
        raise ValueError(f"{x.shape[0]} embeddings for {n_train} + {len(valid_rows)} rows")
    report = {
        "method": method,
        "n_rows": int(x.shape[0]),
        "keep_ratio": keep_ratio,
        "min_cluster_size": min_cluster_size,
        "seed": seed,
    }
    start = time.time()
    report["n_clusters_estimated"] = n_clusters is None
    if method == "auto":  # spectral while the dense affinity fits, else k-means
        method = "spectral" if x.shape[0] <= SPECTRAL_MAX_ROWS else "kmeans"
        report["method"] = f"auto: {method}"
    if method == "spectral":  # the count from the eigengap unless given
        labels, report["spectral"] = spectral_clusters(x, n_clusters, seed=seed)
        n_clusters = report["spectral"]["n_clusters"]
    else:
        if n_clusters is None:
            n_clusters, silhouettes = estimate_n_clusters(x, seed=seed)
            report["silhouette"] = {str(k): v for k, v in silhouettes.items()}
        labels = cluster_pseudo_labels(x, n_clusters, method, seed)
    if overcluster_factor:
        labels = overcluster_merge(x, n_clusters, overcluster_factor, seed)
        report["overcluster_factor"] = overcluster_factor
    report["n_clusters"] = int(n_clusters)
    keep = purity_filter(x, labels, keep_ratio, min_cluster_size)
    report["cluster_seconds"] = round(time.time() - start, 3)
    train_labels, valid_labels = labels[:n_train], labels[n_train:]
    train_keep = keep[:n_train]
    trained = set(train_labels[train_keep].tolist())
    valid_keep = keep[n_train:] & np.isin(valid_labels, list(trained))
    all_train, all_valid = relabel(train_rows, train_labels), relabel(valid_rows, valid_labels)
    paths = {
        name: os.path.join(out_folder, f"{name}.csv") for name in ("train_all", "valid_all", "train", "valid")
    }
    write_csv(all_train, fields, paths["train_all"])
    write_csv(all_valid, fields, paths["valid_all"])
    write_csv([r for r, k in zip(all_train, train_keep) if k], fields, paths["train"])
    write_csv([r for r, k in zip(all_valid, valid_keep) if k], fields, paths["valid"])
    sizes = np.bincount(train_labels[train_keep], minlength=n_clusters)
    report.update(
        train_rows=n_train,
        train_kept=int(train_keep.sum()),
        valid_rows=len(valid_rows),
        valid_kept=int(valid_keep.sum()),
        train_speakers=len(trained),
        cluster_size={
            "min": int(sizes[sizes > 0].min()) if trained else 0,
            "median": float(np.median(sizes[sizes > 0])) if trained else 0,
            "max": int(sizes.max()) if trained else 0,
        },
        outputs=paths,
    )
    if report_labels:  # against the manifest's own spk_id: a report, never used for training
        true = np.array([r["spk_id"] for r in train_rows + valid_rows])
        report["quality_all"] = clustering_quality(labels, true)
        report["quality_kept"] = clustering_quality(labels[keep], true[keep])
    logger.info(
        "pseudo labels: %d/%d training rows kept in %d pseudo speakers%s",
        report["train_kept"],
        n_train,
        len(trained),
        f" (NMI {report['quality_all']['nmi']:.3f}, purity {report['quality_all']['purity']:.3f})"
        if report_labels
        else "",
    )
    with open(os.path.join(out_folder, "clusters.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report
