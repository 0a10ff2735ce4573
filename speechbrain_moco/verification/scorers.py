"""Scoring back-ends for verification trials, on tensors: the interface and cosine.

Every back-end has the same interface: ``fit(train_embeddings, train_labels=None)``
on utterance-level training embeddings, then ``score(enrol, test)`` on paired
rows (one score per trial) and ``score_matrix(a, b)`` (every row of ``a``
against every row of ``b``, used by score normalisation against a cohort).
File I/O stays in the recipe. PLDA is in :mod:`speechbrain_moco.verification.plda`.
"""

import numpy as np
import torch
import torch.nn.functional as F


def cosine_score(enrol, test, mean=None):
    """Row-wise cosine similarity of paired embeddings.

    Arguments
    ---------
    enrol : torch.Tensor
        Enrolment embeddings, shape (N, D).
    test : torch.Tensor
        Test embeddings, shape (N, D).
    mean : torch.Tensor, optional
        Vector of shape (D,) subtracted from both sides before normalising.

    Returns
    -------
    torch.Tensor
        Scores, shape (N,).

    Example
    -------
    >>> enrol = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    >>> test = torch.tensor([[2.0, 0.0], [-1.0, -1.0]])
    >>> cosine_score(enrol, test).round(decimals=4)
    tensor([ 1., -1.])
    >>> cosine_score(enrol, test, mean=torch.tensor([0.0, 1.0])).round(decimals=4)
    tensor([ 0.9487, -0.4472])
    """
    if enrol.shape != test.shape or enrol.dim() != 2:
        raise ValueError(f"expected two (N, D) tensors, got {tuple(enrol.shape)} and {tuple(test.shape)}")
    if mean is not None:
        mean = mean.to(enrol)
        enrol = enrol - mean
        test = test - mean
    enrol = F.normalize(enrol, dim=1)
    test = F.normalize(test, dim=1)
    return (enrol * test).sum(dim=1)


def _as_numpy(x):
    """(N, D) float64 numpy array from a tensor or array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (N, D) embeddings, got shape {x.shape}")
    return x


def _out_dtype(x):
    """Floating dtype of a tensor input, float64 for anything else."""
    if torch.is_tensor(x) and x.is_floating_point():
        return x.dtype
    return torch.float64


class Scorer:
    """Base class of the scoring back-ends (see the module docstring)."""

    def fit(self, train_embeddings, train_labels=None):
        """Estimate the back-end from (N, D) training embeddings; returns self."""
        return self

    def score(self, enrol, test):
        """Scores of paired rows: (N, D), (N, D) -> (N,)."""
        raise NotImplementedError

    def score_matrix(self, a, b):
        """Scores of every row of ``a`` (M, D) against every row of ``b`` (K, D)."""
        raise NotImplementedError


class CosineScorer(Scorer):
    """Cosine similarity, optionally after subtracting the training mean
    (``mean_subtraction``) and dividing by the training standard deviation per
    dimension (``std_norm``: z-normalised features, for hand-made statistics
    whose dimensions have unrelated scales).

    Example
    -------
    >>> train = torch.tensor([[1.0, 1.0], [1.0, 3.0]])
    >>> scorer = CosineScorer(mean_subtraction=True).fit(train)
    >>> scorer.mean
    tensor([1., 2.])
    >>> scorer.score(torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 4.0]]))
    tensor([0.])
    >>> CosineScorer().score_matrix(torch.eye(2), torch.tensor([[1.0, 0.0]]))
    tensor([[1.],
            [0.]])
    >>> z = CosineScorer(std_norm=True).fit(torch.tensor([[0.0, 0.0], [2.0, 200.0]]))
    >>> round(float(z.score(torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 200.0]]))), 4)
    -1.0
    """

    def __init__(self, mean_subtraction=False, std_norm=False):
        self.mean_subtraction = mean_subtraction or std_norm
        self.std_norm = std_norm
        self.mean = self.std = None

    def fit(self, train_embeddings, train_labels=None):
        """Store the training mean and standard deviation."""
        x = torch.as_tensor(train_embeddings)
        self.mean = x.mean(dim=0)
        self.std = x.std(dim=0).clamp_min(1e-8) if x.shape[0] > 1 else torch.ones_like(self.mean)
        return self

    def _mean(self):
        if not self.mean_subtraction:
            return None
        if self.mean is None:
            raise RuntimeError("CosineScorer(mean_subtraction=True) must be fit first")
        return self.mean

    def _standardise(self, x):
        return (x - self.mean.to(x)) / self.std.to(x)

    def score(self, enrol, test):
        """Row-wise cosine of (N, D) pairs (see ``scoring.cosine_score``)."""
        if self.std_norm:
            self._mean()
            return cosine_score(self._standardise(enrol), self._standardise(test))
        return cosine_score(enrol, test, mean=self._mean())

    def score_matrix(self, a, b):
        """(M, K) cosine similarities: one matrix product."""
        mean = self._mean()
        if self.std_norm:
            a, b = self._standardise(a), self._standardise(b)
        elif mean is not None:
            a, b = a - mean.to(a), b - mean.to(b)
        return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
