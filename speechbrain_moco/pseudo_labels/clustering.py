"""Label-free pseudo speakers: cluster utterance embeddings, estimate how many speakers
there are, keep the samples closest to their cluster centre, and measure the clusters
against reference labels (a report only).

Clustering is scikit-learn's ``MiniBatchKMeans`` (spherical, on L2-normalised
embeddings; scales to VoxCeleb2's ~1 M utterances on one machine, see
``benchmarks/clustering_scale.py``) or ``AgglomerativeClustering`` with cosine
distance (O(N^2) memory: small corpora).
"""

import math

import numpy as np
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def normalise(x):
    """L2-normalised float32 rows of an (N, D) array or tensor."""
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def cluster_pseudo_labels(embeddings, n_clusters, method="kmeans", seed=0):
    """Label-free pseudo speaker labels by clustering the embeddings.

    Arguments
    ---------
    embeddings : torch.Tensor or np.ndarray
        (N, D) utterance embeddings.
    n_clusters : int
        Number of pseudo speakers.
    method : str
        ``"kmeans"``: scikit-learn ``MiniBatchKMeans`` on L2-normalised
        embeddings (spherical k-means, scales to millions of rows);
        ``"agglomerative"``: ``AgglomerativeClustering`` with cosine distance
        and average linkage (O(N^2) memory: small sets only).
    seed : int
        Random state of k-means.

    Returns
    -------
    np.ndarray
        (N,) int64 cluster ids in ``[0, n_clusters)``.

    Example
    -------
    >>> import torch
    >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> labels = cluster_pseudo_labels(x, 2, method="agglomerative")
    >>> bool(labels[0] == labels[1] != labels[2] == labels[3])
    True
    """
    from sklearn.cluster import AgglomerativeClustering, MiniBatchKMeans

    x = embeddings
    if not isinstance(x, np.ndarray):  # a tensor
        x = np.asarray(x.detach().cpu().numpy(), dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (N, D) embeddings, got shape {x.shape}")
    if not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters={n_clusters} must be in [1, {x.shape[0]}]")
    # float32 halves the memory at VoxCeleb2 scale (1 M x 192: 0.77 GB)
    x = x.astype(np.float32, copy=False)
    x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    if method == "kmeans":
        # k-means++ initialisation dominates at thousands of clusters: one init there
        model = MiniBatchKMeans(
            n_clusters=n_clusters,
            random_state=seed,
            n_init=3 if n_clusters < 1000 else 1,
            batch_size=max(1024, 3 * n_clusters),
        )
    elif method == "agglomerative":
        model = AgglomerativeClustering(n_clusters=n_clusters, metric="cosine", linkage="average")
    else:
        raise ValueError(f"unknown clustering method {method!r} (kmeans | agglomerative)")
    labels = model.fit_predict(x).astype(np.int64)
    logger.info("%s: %d embeddings -> %d pseudo speakers", method, x.shape[0], np.unique(labels).size)
    return labels


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
        scores[k] = (
            float(silhouette_score(x, labels, metric="cosine")) if np.unique(labels).size > 1 else -1.0
        )
    best = max(scores, key=scores.get)
    logger.info("estimated %d pseudo speakers (silhouette %.3f over %s)", best, scores[best], candidates)
    return best, scores


def spectral_clusters(x, n_clusters=None, max_clusters=None, p_grid=None, seed=0, max_rows=20000):
    """Spectral clustering with the number of clusters from the eigengap (NME-SC).

    The auto-tuning spectral clustering of speaker diarization (Park et al. 2019): the cosine
    affinity of the rows (L2-normalised, centred on their mean, normalised again), each row's
    ``p`` largest entries kept (binarised), symmetrised; for every ``p`` of ``p_grid`` the
    largest gap among the first ``max_clusters`` (default N/2, at most 1000) eigenvalues of its
    Laplacian gives a count. ``p`` runs from 2 (:func:`neighbour_grid`), whatever the corpus
    size, up to where the count collapses into speaker groups (:func:`finest_scale`); a graph
    left in pieces is skipped; among the rest the largest count wins, the smallest
    ``p / (gap / largest eigenvalue)`` (NME-SC) between equal ones. The rows of the eigenvectors
    are then clustered by k-means. On the MoCo embeddings of the speechocean762_dev train half
    (838 utterances of 63 speakers) it found 64 clusters (NMI 0.962, purity 0.945) where the
    silhouette maximum of k-means chose 73 (NMI 0.947, purity 0.930). Dense: O(N^2) memory
    and O(N^3) time, for up to ``max_rows`` rows.

    Returns ``(labels (N,), report)`` with the chosen ``p``, the count and the gaps.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = np.repeat(rng.standard_normal((4, 16)), 25, axis=0) + 0.3 * rng.standard_normal((100, 16))
    >>> labels, report = spectral_clusters(x)
    >>> report["n_clusters"], len(set(labels[:25].tolist()))
    (4, 1)
    """
    from scipy.linalg import eigh
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import eigsh
    from sklearn.cluster import KMeans

    x = normalise(x)
    x = normalise(x - x.mean(axis=0))  # centred: the mean embedding carries no speaker
    n = x.shape[0]
    if n > max_rows:
        raise ValueError(f"spectral clustering is dense (O(N^2)): {n} rows > max_rows={max_rows}; use kmeans")
    if n < 4:
        raise ValueError(f"{n} embeddings: too few for spectral clustering")
    max_clusters = min(max_clusters or min(n // 2, 1000), n - 1)
    if n_clusters is not None and not 1 <= n_clusters < n:
        raise ValueError(f"n_clusters={n_clusters} must be in [1, {n - 1}]")
    n_vectors = max(max_clusters, n_clusters or 0)  # eigenvalues 0 .. n_vectors
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    if p_grid is None:
        p_grid = neighbour_grid(n)
    order = np.argsort(-sim, axis=1)
    del sim

    def laplacian_of(p):
        affinity = np.zeros((n, n), dtype=np.float64)
        np.put_along_axis(affinity, order[:, :p], 1.0, axis=1)
        affinity = (affinity + affinity.T) / 2
        return np.diag(affinity.sum(axis=1)) - affinity

    tried, ratios, pieces = {}, {}, set()
    for p in sorted(p_grid):  # eigenvalues only while searching; eigenvectors for the chosen p
        laplacian = laplacian_of(p)
        values = eigh(laplacian, subset_by_index=[0, n_vectors], eigvals_only=True)
        # gap i lies between eigenvalues i and i + 1: a count of i + 1 clusters, 1 .. max_clusters
        gaps = np.diff(values)[:max_clusters]
        tried[int(p)] = int(np.argmax(gaps)) + 1
        # a graph in pieces of a few rows counts pieces, not speakers; a count of clusters of
        # under 3 rows on average, or at the top of the searched range, found no speakers
        n_parts = connected_components(csr_matrix(laplacian != 0), directed=False)[0]
        if n_parts > n / 4 or tried[int(p)] > n / 3 or tried[int(p)] >= 0.9 * max_clusters:
            pieces.add(int(p))
        whole = {q: k for q, k in tried.items() if q not in pieces}
        if whole and len(finest_scale(whole)) < len(whole):  # collapsed: wider ones are coarser
            break
        # NME-SC: the gap normalised by the Laplacian's largest eigenvalue
        largest = float(eigsh(csr_matrix(laplacian), k=1, which="LA", return_eigenvectors=False)[0])
        ratios[int(p)] = p / (gaps.max() / max(largest, 1e-12) + 1e-12)
    whole = {q: k for q, k in tried.items() if q not in pieces}
    eligible = [p for p in finest_scale(whole) if p in ratios] if whole else []
    order_p = sorted(tried)
    # a count that a neighbouring size confirms (within 20 %): the structure holds there
    held = [
        p
        for p in eligible
        if any(
            abs(tried[q] - tried[p]) <= 0.2 * tried[p]
            for q in order_p[max(0, order_p.index(p) - 1) : order_p.index(p) + 2]
            if q != p
        )
    ]
    # a tiny set may have no size left: then every size before the collapse
    eligible = held or eligible or [p for p in finest_scale(tried) if p in ratios]
    # the finest count that holds (a split speaker is two clean classes, a merged pair label
    # noise: the field over-clusters), the NME criterion between equal counts. On the
    # speechocean762_dev utterances embedded by a MoCo run of its train half, counts of 110, 94,
    # 122 and 99 for 3, 4, 7 and 10 neighbours: NME alone took 94 (purity 0.69), this 122 (0.83)
    p = min(eligible, key=lambda q: (-tried[q], ratios[q]))
    k = tried[p] if n_clusters is None else int(n_clusters)
    k = max(k, 2) if n_clusters is None else k
    _, vectors = eigh(laplacian_of(p), subset_by_index=[0, k - 1])
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors).astype(np.int64)
    logger.info("spectral clustering: %d embeddings -> %d clusters (p=%d neighbours)", n, k, p)
    return labels, {
        "n_clusters": k,
        "p_neighbours": int(p),
        "p_grid": [int(v) for v in p_grid],
        "count_by_p": tried,
        "p_searched": eligible,
    }


def finest_scale(count_by_p, drop=4.0, agree=0.2):
    """The neighbourhood sizes searched for the count: every one up to the first whose
    eigengap count falls to under ``1 / drop`` of the previous one's once two consecutive
    sizes have agreed (within ``agree``) on a count.

    Speakers nest in groups (gender, age, channel): a neighbourhood wider than a speaker's
    utterances shows the groups' few clusters and the count collapses (on synthetic corpora of
    500 speakers x 5 utterances: 497 clusters with 3 neighbours, 4 with 5). Pseudo speakers
    want the finest structure that holds; the NME criterion then chooses among these. The
    smallest neighbourhoods can fragment the graph into many pieces before any structure
    holds: a fall from those is no collapse.

    Example
    -------
    >>> finest_scale({2: 499, 3: 497, 5: 4, 7: 4})
    [2, 3]
    >>> finest_scale({2: 62, 3: 8, 4: 8, 6: 8, 9: 1})
    [2, 3, 4, 6]
    """
    ps = sorted(count_by_p)
    kept, held = [ps[0]], False
    for prev, p in zip(ps, ps[1:]):
        if held and count_by_p[p] * drop < count_by_p[prev]:
            break
        held = held or abs(count_by_p[p] - count_by_p[prev]) <= agree * count_by_p[prev]
        kept.append(p)
    return kept


def neighbour_grid(n, points=14):
    """The neighbourhood sizes the eigengap count is searched over: a geometric grid from 2
    to a fifth of the rows. It must reach below a speaker's utterance count whatever the
    corpus size: a neighbourhood wider than a speaker joins speakers into their gender and
    age groups (on the 1,662 utterances of speechocean762_dev, a grid from 1 % of the rows,
    17 neighbours, counted 2 clusters for 125 speakers of 13 utterances).

    Example
    -------
    >>> neighbour_grid(100)
    [2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 17, 20]
    """
    top = max(3, int(round(0.2 * n)))
    return sorted({int(round(v)) for v in np.geomspace(2, top, points)})


def overcluster_merge(x, n_clusters, factor=4.0, seed=0):
    """Over-cluster then merge (Hyperion's ``cos_ahc`` stage, wavlm_ssl_sv's k-means 50k ->
    AHC 7.5k): k-means into ``factor x n_clusters`` small clusters (at most N / 2), then
    agglomerative clustering of their L2-normalised centroids (cosine, average linkage) into
    ``n_clusters``; an utterance takes its small cluster's group. Small clusters are purer
    than speaker-sized ones, and merging whole clusters keeps them together.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = np.repeat(rng.standard_normal((3, 8)), 12, axis=0) + 0.1 * rng.standard_normal((36, 8))
    >>> labels = overcluster_merge(x, 3, factor=3)
    >>> [len(set(labels[i : i + 12].tolist())) for i in (0, 12, 24)], len(set(labels.tolist()))
    ([1, 1, 1], 3)
    """
    from sklearn.cluster import AgglomerativeClustering

    x = normalise(x)
    fine = min(max(int(round(factor * n_clusters)), n_clusters), x.shape[0] // 2)
    if fine <= n_clusters:
        return cluster_pseudo_labels(x, n_clusters, "kmeans", seed)
    small = cluster_pseudo_labels(x, fine, "kmeans", seed)
    ids = np.unique(small)
    centroids = normalise(np.stack([x[small == i].mean(axis=0) for i in ids]))
    merged = AgglomerativeClustering(n_clusters=n_clusters, metric="cosine", linkage="average").fit_predict(
        centroids
    )
    lookup = dict(zip(ids.tolist(), merged.tolist()))
    return np.array([lookup[i] for i in small.tolist()], dtype=np.int64)


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
        return {"nmi": None, "purity": None, "inverse_purity": None, "n_clusters": 0, "n_true": 0, "n": 0}
    table = contingency_matrix(true, pred)
    return {
        "nmi": float(normalized_mutual_info_score(true, pred)),
        "purity": float(table.max(axis=0).sum() / pred.size),
        "inverse_purity": float(table.max(axis=1).sum() / pred.size),
        "n_clusters": int(np.unique(pred).size),
        "n_true": int(np.unique(true).size),
        "n": int(pred.size),
    }
