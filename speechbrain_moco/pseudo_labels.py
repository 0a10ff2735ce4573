"""Label-free pseudo speakers: cluster embeddings, filter, relabel the manifest.

The refinement stage of self-supervised speaker verification (Cai et al.'s
iterative clustering; loss-gated learning; DINO + pseudo-label fine-tuning):
embed the training utterances with a MoCo (or previous-round) encoder, cluster
them into pseudo speakers, keep the samples closest to their cluster centre,
and train the supervised recipe on the pseudo-labels.

``python recipes/Folder/SpeakerRec/pseudo_labels.py
recipes/Folder/SpeakerRec/hparams/pseudo_labels.yaml --pretrain_path=RUN
--output_folder=PL [--n_clusters=N]`` writes, in ``PL``:

- ``train_all.csv`` / ``valid_all.csv``: every row of the run's training /
  validation manifest, byte-for-byte except ``spk_id`` (the pseudo label);
- ``train.csv`` / ``valid.csv``: the rows kept by the purity filter (and, for
  validation, only pseudo speakers that training has) -- what the supervised
  recipe trains on (``--train_annotation=PL/train.csv --valid_annotation=PL/valid.csv``);
- ``clusters.json``: sizes, timings, and quality against the manifest's own
  ``spk_id`` (NMI, purity) when asked -- a report only, never used for training.

Clustering is scikit-learn's ``MiniBatchKMeans`` (spherical, on L2-normalised
embeddings; scales to VoxCeleb2's ~1 M utterances on one machine, see
``benchmarks/clustering_scale.py``) or ``AgglomerativeClustering`` with cosine
distance (O(N^2) memory: small corpora).
"""

import csv
import json
import math
import os
import sys
import time

import numpy as np
from speechbrain.utils.logger import get_logger

from speechbrain_moco.backends import cluster_pseudo_labels

logger = get_logger(__name__)


def normalise(x):
    """L2-normalised float32 rows of an (N, D) array or tensor."""
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def estimate_n_clusters(x, candidates=None, sample=5000, seed=0):
    """Number of pseudo speakers that maximises the cosine silhouette.

    k-means is run for each candidate on a seeded subsample of at most
    ``sample`` rows. Default candidates: a geometric grid from 2 to N/2 (N the
    subsample size). Returns ``(best_k, {k: silhouette})``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.standard_normal((5, 16))
    >>> x = np.repeat(centres, 20, axis=0) + 0.05 * rng.standard_normal((100, 16))
    >>> estimate_n_clusters(x, candidates=[2, 5, 10])[0]
    5
    """
    from sklearn.metrics import silhouette_score

    x = normalise(x)
    rng = np.random.default_rng(seed)
    if x.shape[0] > sample:
        x = x[rng.choice(x.shape[0], sample, replace=False)]
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"{n} embeddings: too few to estimate a number of clusters")
    if candidates is None:
        candidates = sorted({int(round(v)) for v in np.geomspace(2, max(n // 2, 3), 16)})
    candidates = [k for k in candidates if 2 <= k < n]
    if not candidates:
        raise ValueError(f"no candidate number of clusters in [2, {n}) for {n} embeddings")
    scores = {}
    for k in candidates:
        labels = cluster_pseudo_labels(x, k, "kmeans", seed)
        scores[k] = (float(silhouette_score(x, labels, metric="cosine"))
                     if np.unique(labels).size > 1 else -1.0)
    best = max(scores, key=scores.get)
    logger.info("estimated %d pseudo speakers (silhouette %.3f over %s)", best, scores[best],
                candidates)
    return best, scores


def purity_filter(x, labels, keep_ratio=1.0, min_cluster_size=2):
    """Boolean mask of the samples kept for training.

    In each cluster, keep the ``ceil(keep_ratio * size)`` samples with the
    highest cosine to the cluster centre; then drop clusters left with fewer
    than ``min_cluster_size`` samples (a singleton teaches a classifier nothing).

    Example
    -------
    >>> x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.5, 0.5]])
    >>> purity_filter(x, np.array([0, 0, 1, 0]), keep_ratio=0.6).tolist()
    [True, True, False, False]
    """
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    x = normalise(x)
    labels = np.asarray(labels)
    keep = np.zeros(labels.size, dtype=bool)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, bounds):
        centre = x[members].mean(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        n_keep = math.ceil(keep_ratio * members.size - 1e-9)
        if n_keep < min_cluster_size:
            continue
        closest = members[np.argsort(-(x[members] @ centre), kind="stable")[:n_keep]]
        keep[closest] = True
    return keep


def clustering_quality(pred, true):
    """NMI, purity and inverse purity of predicted clusters against true labels.

    Example
    -------
    >>> q = clustering_quality([0, 0, 1, 1], ["a", "a", "b", "b"])
    >>> q["purity"], q["nmi"]
    (1.0, 1.0)
    """
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    pred, true = np.asarray(pred), np.asarray(true)
    if pred.size == 0:
        return {"nmi": None, "purity": None, "inverse_purity": None, "n_clusters": 0,
                "n_true": 0, "n": 0}
    table = contingency_matrix(true, pred)
    return {
        "nmi": float(normalized_mutual_info_score(true, pred)),
        "purity": float(table.max(axis=0).sum() / pred.size),
        "inverse_purity": float(table.max(axis=1).sum() / pred.size),
        "n_clusters": int(np.unique(pred).size),
        "n_true": int(np.unique(true).size),
        "n": int(pred.size),
    }


def read_rows(path):
    """Raw CSV rows (strings, as written) and the header of a manifest."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "ID" not in reader.fieldnames or "spk_id" not in reader.fieldnames:
            raise ValueError(f"{path}:1: a manifest needs ID and spk_id columns")
        return list(reader), list(reader.fieldnames)


def write_rows(rows, fields, path):
    """Write raw manifest rows atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def relabel(rows, labels, prefix="pl"):
    """Copies of ``rows`` whose ``spk_id`` is the pseudo label (nothing else changes)."""
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    width = max(5, len(str(int(np.max(labels)))) if len(labels) else 5)
    return [dict(row, spk_id=f"{prefix}{int(lab):0{width}d}") for row, lab in zip(rows, labels)]


def pseudo_label_manifests(x, train_rows, valid_rows, fields, out_folder, n_clusters=None,
                           method="kmeans", keep_ratio=1.0, min_cluster_size=2, seed=0,
                           report_labels=True):
    """Cluster ``x`` (train rows, then valid rows) and write the manifests.

    Returns the ``clusters.json`` report (also written to ``out_folder``).
    """
    n_train = len(train_rows)
    if x.shape[0] != n_train + len(valid_rows):
        raise ValueError(f"{x.shape[0]} embeddings for {n_train} + {len(valid_rows)} rows")
    report = {"method": method, "n_rows": int(x.shape[0]), "keep_ratio": keep_ratio,
              "min_cluster_size": min_cluster_size, "seed": seed}
    start = time.time()
    if n_clusters is None:
        n_clusters, silhouettes = estimate_n_clusters(x, seed=seed)
        report["silhouette"] = {str(k): v for k, v in silhouettes.items()}
        report["n_clusters_estimated"] = True
    report["n_clusters"] = int(n_clusters)
    labels = cluster_pseudo_labels(x, n_clusters, method, seed)
    keep = purity_filter(x, labels, keep_ratio, min_cluster_size)
    report["cluster_seconds"] = round(time.time() - start, 3)
    train_labels, valid_labels = labels[:n_train], labels[n_train:]
    train_keep = keep[:n_train]
    trained = set(train_labels[train_keep].tolist())
    valid_keep = keep[n_train:] & np.isin(valid_labels, list(trained))
    all_train, all_valid = relabel(train_rows, train_labels), relabel(valid_rows, valid_labels)
    paths = {name: os.path.join(out_folder, f"{name}.csv")
             for name in ("train_all", "valid_all", "train", "valid")}
    write_rows(all_train, fields, paths["train_all"])
    write_rows(all_valid, fields, paths["valid_all"])
    write_rows([r for r, k in zip(all_train, train_keep) if k], fields, paths["train"])
    write_rows([r for r, k in zip(all_valid, valid_keep) if k], fields, paths["valid"])
    sizes = np.bincount(train_labels[train_keep], minlength=n_clusters)
    report.update(
        train_rows=n_train, train_kept=int(train_keep.sum()),
        valid_rows=len(valid_rows), valid_kept=int(valid_keep.sum()),
        train_speakers=len(trained),
        cluster_size={"min": int(sizes[sizes > 0].min()) if trained else 0,
                      "median": float(np.median(sizes[sizes > 0])) if trained else 0,
                      "max": int(sizes.max()) if trained else 0},
        outputs=paths,
    )
    if report_labels:  # against the manifest's own spk_id: a report, never used for training
        true = np.array([r["spk_id"] for r in train_rows + valid_rows])
        report["quality_all"] = clustering_quality(labels, true)
        report["quality_kept"] = clustering_quality(labels[keep], true[keep])
    logger.info("pseudo labels: %d/%d training rows kept in %d pseudo speakers%s",
                report["train_kept"], n_train, len(trained),
                f" (NMI {report['quality_all']['nmi']:.3f}, purity "
                f"{report['quality_all']['purity']:.3f})" if report_labels else "")
    with open(os.path.join(out_folder, "clusters.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report


def run_pseudo_labels(argv=None):
    """``python pseudo_labels.py hparams/pseudo_labels.yaml --pretrain_path=RUN --output_folder=PL``."""
    import torch

    from speechbrain_moco.dataio import utterance_dataset
    from speechbrain_moco.evaluation import cached_embeddings
    from speechbrain_moco.recipe import load_hparams
    from speechbrain_moco.verification import load_trained_encoder

    argv = sys.argv[1:] if argv is None else argv
    _, run_opts, _, hparams = load_hparams(argv)
    run = hparams["pretrain_path"]
    if run is None:
        raise ValueError("--pretrain_path (the MoCo or previous-round --output_folder) is required")
    with open(os.path.join(run, "run_info.json"), encoding="utf-8") as f:
        info = json.load(f)
    train_csv = hparams["train_annotation"] or info["train_annotation"]
    valid_csv = hparams["valid_annotation"] or info.get("valid_annotation")
    if valid_csv is None:  # runs written before run_info recorded it
        valid_csv = os.path.join(os.path.dirname(info["train_annotation"]), "valid.csv")
    data_folder = hparams["data_folder"] or info["data_folder"]
    os.makedirs(hparams["output_folder"], exist_ok=True)
    embed_fn, train_hp = load_trained_encoder(run, run_opts, hparams["average_checkpoints"],
                                              hparams["crop_seconds"])
    device = run_opts.get("device", "cpu")
    train_rows, fields = read_rows(train_csv)
    valid_rows = read_rows(valid_csv)[0] if valid_csv and os.path.isfile(valid_csv) else []
    start = time.time()
    parts = []
    for name, csv_path, rows in (("train", train_csv, train_rows), ("valid", valid_csv, valid_rows)):
        if not rows:
            continue
        data = utterance_dataset(csv_path, data_folder, train_hp["sample_rate"])
        ids, emb = cached_embeddings(data, embed_fn, os.path.join(hparams["output_folder"],
                                                                  f"{name}_embeddings.pt"),
                                     embed_fn.checkpoint, device, hparams["batch_size"], True)
        index = {uid: i for i, uid in enumerate(ids)}
        parts.append(emb[torch.tensor([index[r["ID"]] for r in rows])])
    x = torch.cat(parts).numpy()
    extract_s = time.time() - start
    report = pseudo_label_manifests(
        x, train_rows, valid_rows, fields, hparams["output_folder"], hparams["n_clusters"],
        hparams["cluster_method"], hparams["keep_ratio"], hparams["min_cluster_size"],
        hparams["seed"], hparams["report_labels"])
    report.update(pretrain_path=os.path.abspath(run), encoder=embed_fn.checkpoint,
                  extract_seconds=round(extract_s, 3), data_folder=data_folder)
    with open(os.path.join(hparams["output_folder"], "clusters.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    return report
