"""Score normalisation against a cohort: z-norm, t-norm, s-norm and AS-norm.

The cohort is a matrix of utterance-level training embeddings (no labels).
Statistics are computed once per *unique* enrolment / test utterance with one
matrix product against the cohort (in row chunks) and, for AS-norm, one
``topk`` per utterance, then gathered per trial: no per-trial Python loop
(as wespeaker's ``bin/score_norm.py``). Each utterance's cohort statistics are
the mean and the unbiased (``N - 1``) standard deviation of its cohort scores
(all of them, or its ``top_k`` highest for AS-norm):

- z-norm: ``(s - mean_e) / std_e`` (enrolment side),
- t-norm: ``(s - mean_t) / std_t`` (test side),
- s-norm: the average of both, with the whole cohort,
- AS-norm: s-norm with the ``top_k`` closest cohort scores of each side.
"""

import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.verification.scorers import CosineScorer

logger = get_logger(__name__)

METHODS = ("znorm", "tnorm", "snorm", "asnorm")


def cohort_stats(embeddings, cohort, top_k=None, scorer=None, chunk_size=4096, eps=1e-8):
    """Mean and std of each row's (top-k) scores against the cohort.

    Arguments
    ---------
    embeddings : torch.Tensor
        (M, D) unique utterance embeddings.
    cohort : torch.Tensor
        (C, D) cohort embeddings.
    top_k : int, optional
        Keep each row's ``top_k`` highest cohort scores (AS-norm); None: all.
        Capped at the cohort size.
    scorer : backends.Scorer, optional
        Fitted back-end whose ``score_matrix`` scores against the cohort;
        None: plain cosine.
    chunk_size : int
        Rows scored against the cohort at a time (bounds memory to
        ``chunk_size x C`` scores).
    eps : float
        Lower bound of the standard deviation.

    Returns
    -------
    mean, std : torch.Tensor
        (M,) each.

    Example
    -------
    >>> cohort = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> mean, std = cohort_stats(torch.tensor([[1.0, 0.0]]), cohort, top_k=2)
    >>> mean, std
    (tensor([0.5000]), tensor([0.7071]))
    """
    scorer = CosineScorer() if scorer is None else scorer
    if cohort.shape[0] < 2:
        raise ValueError("the cohort needs at least 2 embeddings")
    k = cohort.shape[0] if top_k is None else min(int(top_k), cohort.shape[0])
    if k < 2:
        raise ValueError(f"top_k={top_k}: need at least 2 cohort scores for a std")
    means, stds = [], []
    for start in range(0, embeddings.shape[0], chunk_size):
        scores = scorer.score_matrix(embeddings[start : start + chunk_size], cohort)
        if k < cohort.shape[0]:
            scores = scores.topk(k, dim=1).values
        means.append(scores.mean(dim=1))
        stds.append(scores.std(dim=1).clamp(min=eps))
    return torch.cat(means), torch.cat(stds)


def _unique_rows(enrol_emb, test_emb, enrol_idx, test_idx):
    """Unique embedding matrices and per-trial indices into them.

    Returns ``(enrol_mat, enrol_idx, test_mat, test_idx, shared)``; ``shared``
    means both sides index the same matrix (statistics computed once).
    """
    if (enrol_idx is None) != (test_idx is None):
        raise ValueError("give both enrol_idx and test_idx, or neither")
    if enrol_idx is not None:
        enrol_idx = torch.as_tensor(enrol_idx, dtype=torch.long)
        test_idx = torch.as_tensor(test_idx, dtype=torch.long)
        return enrol_emb, enrol_idx, test_emb, test_idx, enrol_emb is test_emb
    if enrol_emb.shape != test_emb.shape:
        raise ValueError(f"paired rows differ: {tuple(enrol_emb.shape)} vs {tuple(test_emb.shape)}")
    both = torch.cat([enrol_emb, test_emb])
    unique, inverse = torch.unique(both, dim=0, return_inverse=True)
    n = enrol_emb.shape[0]
    return unique, inverse[:n], unique, inverse[n:], True


def normalize_scores(
    scores,
    enrol_emb,
    test_emb,
    cohort,
    method="asnorm",
    top_k=300,
    enrol_idx=None,
    test_idx=None,
    scorer=None,
    chunk_size=4096,
):
    """Normalise trial scores with cohort statistics (see the module docstring).

    Arguments
    ---------
    scores : torch.Tensor
        (N,) raw trial scores.
    enrol_emb, test_emb : torch.Tensor
        Without indices: (N, D) paired rows (duplicates are found with
        ``torch.unique`` so each utterance is scored against the cohort once).
        With ``enrol_idx`` / ``test_idx``: (M, D) / (K, D) matrices of unique
        utterances (pass the same tensor twice when both sides share one).
    cohort : torch.Tensor
        (C, D) cohort embeddings (utterance-level training embeddings).
    method : str
        ``"znorm"``, ``"tnorm"``, ``"snorm"`` or ``"asnorm"``.
    top_k : int
        Cohort scores kept per utterance for AS-norm (capped at C).
    enrol_idx, test_idx : array-like of int, optional
        (N,) row of each trial's enrolment / test utterance.
    scorer : backends.Scorer, optional
        Fitted back-end used against the cohort; None: cosine.
    chunk_size : int
        Unique utterances scored against the cohort at a time.

    Returns
    -------
    torch.Tensor
        (N,) normalised scores.

    Example
    -------
    >>> cohort = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    >>> e, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    >>> normalize_scores(torch.tensor([0.5]), e, t, cohort, method="snorm")
    tensor([0.6124])
    """
    if method not in METHODS:
        raise ValueError(f"unknown score normalisation {method!r}; one of {METHODS}")
    scores = torch.as_tensor(scores)
    enrol_mat, enrol_idx, test_mat, test_idx, shared = _unique_rows(enrol_emb, test_emb, enrol_idx, test_idx)
    if enrol_idx.numel() != scores.numel() or test_idx.numel() != scores.numel():
        raise ValueError(
            f"{scores.numel()} scores but {enrol_idx.numel()} / {test_idx.numel()} trial indices"
        )
    k = top_k if method == "asnorm" else None
    kwargs = {"top_k": k, "scorer": scorer, "chunk_size": chunk_size}
    need_enrol = method != "tnorm"
    need_test = method != "znorm"
    if shared and need_enrol and need_test:
        mean_e, std_e = cohort_stats(enrol_mat, cohort, **kwargs)
        mean_t, std_t = mean_e, std_e
    else:
        mean_e, std_e = cohort_stats(enrol_mat, cohort, **kwargs) if need_enrol else (None, None)
        mean_t, std_t = cohort_stats(test_mat, cohort, **kwargs) if need_test else (None, None)
    scores = scores.to(cohort.dtype)
    if need_enrol:
        z = (scores - mean_e[enrol_idx]) / std_e[enrol_idx]
    if need_test:
        t = (scores - mean_t[test_idx]) / std_t[test_idx]
    if method == "znorm":
        return z
    if method == "tnorm":
        return t
    logger.debug("%s on %d trials, cohort %d, top_k %s", method, scores.numel(), cohort.shape[0], k)
    return 0.5 * (z + t)
