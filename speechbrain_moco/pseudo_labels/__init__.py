"""Label-free pseudo speakers: clustering, the number of speakers, purity filtering and
the relabelled manifests the supervised recipe trains on."""

from speechbrain_moco.pseudo_labels.clustering import (
    cluster_pseudo_labels,
    clustering_quality,
    estimate_n_clusters,
    normalise,
    purity_filter,
    spectral_clusters,
)
from speechbrain_moco.pseudo_labels.manifests import pseudo_label_manifests, relabel

__all__ = [
    "cluster_pseudo_labels",
    "clustering_quality",
    "estimate_n_clusters",
    "normalise",
    "pseudo_label_manifests",
    "purity_filter",
    "relabel",
    "spectral_clusters",
]
