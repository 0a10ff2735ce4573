"""PLDA scoring back-end (SpeechBrain's ``speechbrain.processing.PLDA_LDA.PLDA``).

A simplified PLDA trained by EM, on speaker labels or, label-free, on pseudo-labels
from :func:`speechbrain_moco.pseudo_labels.cluster_pseudo_labels`. Scoring uses the
closed form of SpeechBrain's ``fast_PLDA_scoring`` on paired rows (no models x
segments matrix, no ``Ndx``).
"""

import numpy as np
import torch
from scipy import linalg
from speechbrain.processing.PLDA_LDA import PLDA, StatObject_SB
from speechbrain.utils.logger import get_logger

from speechbrain_moco.pseudo_labels.clustering import cluster_pseudo_labels
from speechbrain_moco.verification.scorers import Scorer, _as_numpy, _out_dtype

logger = get_logger(__name__)


class _Stats(StatObject_SB):
    """``StatObject_SB`` whose per-model sums are one vectorised pass.

    SpeechBrain's ``sum_stat_per_model`` masks the whole set once per model
    (O(N x models)); this gives the same result in O(N).
    """

    def sum_stat_per_model(self):
        models, inverse, counts = np.unique(self.modelset, return_inverse=True, return_counts=True)
        out = StatObject_SB()
        out.modelset = models
        out.segset = models.copy()
        out.stat0 = np.zeros((models.size, self.stat0.shape[1]), dtype=np.float64)
        out.stat1 = np.zeros((models.size, self.stat1.shape[1]), dtype=np.float64)
        np.add.at(out.stat0, inverse, self.stat0)
        np.add.at(out.stat1, inverse, self.stat1)
        return out, counts.astype(np.float64)


def make_stats(embeddings, labels):
    """Pack (N, D) embeddings and their N labels into a ``StatObject_SB``."""
    x = _as_numpy(embeddings)
    labels = np.asarray([str(v) for v in np.asarray(labels).ravel()], dtype=object)
    if labels.size != x.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings but {labels.size} labels")
    empty = np.array([None] * x.shape[0])
    segs = np.array([f"s{i}" for i in range(x.shape[0])], dtype=object)
    return _Stats(
        modelset=labels, segset=segs, start=empty, stop=empty, stat0=np.ones((x.shape[0], 1)), stat1=x
    )


def lda_matrix(x, labels, dim):
    """(D, dim) LDA projection: the generalised eigenproblem ``Sb v = l Sw v``.

    SpeechBrain's ``get_lda_matrix_stat1`` calls ``eigh`` on the non-symmetric
    ``(Sb Sw^-1)^T``, which reads only one triangle; this solves the symmetric
    generalised problem instead (same scatter matrices).
    """
    x = _as_numpy(x)
    _, inverse, counts = np.unique(np.asarray(labels).ravel(), return_inverse=True, return_counts=True)
    sums = np.zeros((counts.size, x.shape[1]))
    np.add.at(sums, inverse, x)
    means = sums / counts[:, None]
    within = x - means[inverse]
    # Sw: sum over classes of each class's covariance (as SpeechBrain's LDA)
    s_w = (within / counts[inverse, None]).T @ within
    between = means - x.mean(axis=0)
    s_b = between.T @ between
    s_w += 1e-6 * np.trace(s_w) / x.shape[1] * np.eye(x.shape[1])
    values, vectors = linalg.eigh(s_b, s_w)
    return vectors[:, np.argsort(values)[::-1][:dim]]


class PLDAScorer(Scorer):
    """PLDA log-likelihood-ratio scores (SpeechBrain's ``PLDA``).

    Pipeline fitted on the training set: subtract the mean, optional LDA to
    ``lda_dim``, optional length normalisation (to norm ``sqrt(dim)``), then
    PLDA trained by EM with speaker labels or, when ``train_labels`` is None,
    with ``cluster_pseudo_labels(..., n_clusters, cluster_method)``.

    Arguments
    ---------
    lda_dim : int, optional
        LDA output dimension (None: no LDA). Needs labels (or pseudo-labels).
    length_norm : bool
        Length-normalise after the projection (Garcia-Romero and Espy-Wilson).
    rank_f : int, optional
        Rank of the speaker subspace; None or larger than the dimension: full.
    nb_iter : int
        EM iterations.
    scaling_factor : float
        SpeechBrain's PLDA statistics scaling factor.
    n_clusters : int, optional
        Pseudo speakers to cluster when ``fit`` gets no labels.
    cluster_method : str
        ``"kmeans"`` or ``"agglomerative"``.
    seed : int
        Clustering seed.
    """

    def __init__(
        self,
        lda_dim=None,
        length_norm=True,
        rank_f=None,
        nb_iter=10,
        scaling_factor=1.0,
        n_clusters=None,
        cluster_method="kmeans",
        seed=0,
    ):
        self.lda_dim, self.length_norm, self.rank_f = lda_dim, length_norm, rank_f
        self.nb_iter, self.scaling_factor = nb_iter, scaling_factor
        self.n_clusters, self.cluster_method, self.seed = n_clusters, cluster_method, seed
        self.plda = None

    def fit(self, train_embeddings, train_labels=None):
        """Train the projection and the PLDA model; returns self."""
        x = _as_numpy(train_embeddings)
        if train_labels is None:
            if self.n_clusters is None:
                raise ValueError("PLDAScorer.fit needs train_labels or n_clusters")
            train_labels = cluster_pseudo_labels(x, self.n_clusters, self.cluster_method, self.seed)
        elif isinstance(train_labels, torch.Tensor):
            train_labels = train_labels.cpu().numpy()
        self.mean = x.mean(axis=0)
        x = x - self.mean
        self.lda = None
        if self.lda_dim is not None:
            self.lda = lda_matrix(x, train_labels, self.lda_dim)
        x = self._project(x)
        rank = x.shape[1] if self.rank_f is None else min(self.rank_f, x.shape[1])
        self.plda = PLDA(rank_f=rank, nb_iter=self.nb_iter, scaling_factor=self.scaling_factor)
        self.plda.plda(make_stats(x, train_labels))
        self._precompute()
        logger.info(
            "PLDA: %d embeddings, dim %d, rank %d, %d classes",
            x.shape[0],
            x.shape[1],
            rank,
            np.unique(np.asarray(train_labels)).size,
        )
        return self

    def _project(self, x):
        """Centred (and LDA-projected, length-normalised) numpy rows."""
        if self.lda is not None:
            x = x @ self.lda
        if self.length_norm:
            norm = np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
            x = x / norm * np.sqrt(x.shape[1])
        return x

    def project(self, embeddings):
        """Embeddings as the PLDA model sees them (before its own centring)."""
        if self.plda is None:
            raise RuntimeError("PLDAScorer must be fit first")
        return self._project(_as_numpy(embeddings) - self.mean)

    def _precompute(self):
        """Phi, Psi and the constant of ``fast_PLDA_scoring``."""
        f_mat, sigma, scale = self.plda.F, self.plda.Sigma, self.scaling_factor
        eye = np.eye(f_mat.shape[1])
        k = f_mat.T.dot(linalg.inv(sigma) * scale).dot(f_mat)
        alpha1 = np.linalg.slogdet(linalg.inv(k + eye))[1]
        alpha2 = np.linalg.slogdet(linalg.inv(2 * k + eye))[1]
        sigma_ac = f_mat.dot(f_mat.T)
        sigma_tot_inv = linalg.inv(sigma_ac + sigma)
        tmp = linalg.inv(sigma_ac + sigma - sigma_ac.dot(sigma_tot_inv).dot(sigma_ac))
        self._phi = torch.from_numpy(sigma_tot_inv - tmp)
        self._psi = torch.from_numpy(sigma_tot_inv.dot(sigma_ac).dot(tmp))
        self._cst = alpha2 / 2.0 - alpha1

    def _centred(self, x):
        return torch.from_numpy(self.project(x) - self.plda.mean)

    def score(self, enrol, test, chunk_size=65536):
        """PLDA LLR of paired rows, as ``fast_PLDA_scoring`` (p_known=0).

        Rows are scored ``chunk_size`` at a time, so memory stays bounded for
        millions of trials (float64 intermediates of a chunk only).
        """
        if enrol.shape != test.shape:
            raise ValueError(f"paired rows differ: {tuple(enrol.shape)} vs {tuple(test.shape)}")
        parts = []
        for i in range(0, enrol.shape[0], chunk_size):
            e, t = self._centred(enrol[i : i + chunk_size]), self._centred(test[i : i + chunk_size])
            parts.append(
                (
                    0.5 * ((e @ self._phi) * e).sum(1)
                    + 0.5 * ((t @ self._phi) * t).sum(1)
                    + self._cst
                    + ((e @ self._psi) * t).sum(1)
                )
                * self.scaling_factor
            )
        out = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
        return out.to(_out_dtype(enrol))

    def score_matrix(self, a, b):
        """(M, K) PLDA LLRs of every row of ``a`` against every row of ``b``."""
        a_c, b_c = self._centred(a), self._centred(b)
        part_a = 0.5 * ((a_c @ self._phi) * a_c).sum(1)
        part_b = 0.5 * ((b_c @ self._phi) * b_c).sum(1)
        out = part_a[:, None] + part_b[None, :] + self._cst + a_c @ self._psi @ b_c.T
        out = out * self.scaling_factor
        return out.to(_out_dtype(a))
