"""Cosine scoring of verification trials, score / metric files, and the
statistics-pooling (mean + std) embedding baseline that needs no training."""

import json

import numpy as np
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


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
        raise ValueError(
            f"expected two (N, D) tensors, got {tuple(enrol.shape)} and "
            f"{tuple(test.shape)}"
        )
    if mean is not None:
        mean = mean.to(enrol)
        enrol = enrol - mean
        test = test - mean
    enrol = F.normalize(enrol, dim=1)
    test = F.normalize(test, dim=1)
    return (enrol * test).sum(dim=1)


def trial_index(trials, ids):
    """Row indices of each trial's enrolment and test utterance in ``ids``.

    Example
    -------
    >>> trial_index([(1, "b", "a"), (0, "a", "c")], ["a", "b", "c"])
    (tensor([1, 0]), tensor([0, 2]))
    """
    position = {uid: i for i, uid in enumerate(ids)}
    for _, enrol_id, test_id in trials:
        for utt in (enrol_id, test_id):
            if utt not in position:
                raise KeyError(f"no embedding for utterance id {utt!r}")
    return (torch.tensor([position[t[1]] for t in trials], dtype=torch.long),
            torch.tensor([position[t[2]] for t in trials], dtype=torch.long))


def score_trials(trials, embeddings, mean=None):
    """Cosine scores of a trial list, computed in one batched operation.

    Arguments
    ---------
    trials : list of tuple
        ``(label, enrol_id, test_id)`` per trial.
    embeddings : dict
        Utterance id -> 1-D embedding tensor.
    mean : torch.Tensor, optional
        Mean embedding subtracted before normalising (see ``cosine_score``).

    Returns
    -------
    torch.Tensor
        Scores, shape (len(trials),).

    Example
    -------
    >>> emb = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 1.0])}
    >>> score_trials([(1, "a", "a"), (0, "a", "b")], emb)
    tensor([1., 0.])
    """
    if not trials:
        return torch.zeros(0)
    used = list(dict.fromkeys(u for t in trials for u in t[1:]))
    ids = [u for u in used if u in embeddings]
    enrol_idx, test_idx = trial_index(trials, ids)
    matrix = torch.stack([embeddings[utt].reshape(-1) for utt in ids])
    return cosine_score(matrix[enrol_idx], matrix[test_idx], mean=mean)


def write_scores(path, trials, scores):
    """Writes one ``enrol test score label`` line per trial.

    Arguments
    ---------
    path : str or path-like
        Output file.
    trials : list of tuple
        ``(label, enrol_id, test_id)`` per trial.
    scores : torch.Tensor or array-like
        One score per trial.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.txt")
    >>> write_scores(path, [(1, "a", "b")], torch.tensor([0.5]))
    >>> open(path).read()
    'a b 0.500000 1\\n'
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if len(scores) != len(trials):
        raise ValueError(f"{len(trials)} trials but {len(scores)} scores")
    with open(path, "w") as fout:
        fout.writelines(
            f"{enrol_id} {test_id} {score:.6f} {int(label)}\n"
            for (label, enrol_id, test_id), score in zip(trials, scores)
        )
    logger.info("Wrote %d scores to %s", len(trials), path)


def read_scores(path):
    """Reads a file written by ``write_scores``.

    Arguments
    ---------
    path : str or path-like
        Score file.

    Returns
    -------
    enrol_ids : list of str
    test_ids : list of str
    scores : np.ndarray
        float64 scores.
    labels : np.ndarray
        int64 labels.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.txt")
    >>> write_scores(path, [(0, "a", "b")], [0.25])
    >>> read_scores(path)
    (['a'], ['b'], array([0.25]), array([0]))
    """
    enrol_ids, test_ids, scores, labels = [], [], [], []
    with open(path) as fin:
        for line in fin:
            if not line.strip():
                continue
            enrol_id, test_id, score, label = line.split()
            enrol_ids.append(enrol_id)
            test_ids.append(test_id)
            scores.append(float(score))
            labels.append(int(label))
    return (
        enrol_ids,
        test_ids,
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels, dtype=np.int64),
    )


def write_metrics(path, metrics):
    """Writes a metrics dict as JSON (indent 2, sorted keys).

    Arguments
    ---------
    path : str or path-like
        Output file.
    metrics : dict
        JSON-serialisable metrics.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> write_metrics(path, {"b": 1, "a": 2.5})
    >>> json.load(open(path))
    {'a': 2.5, 'b': 1}
    """
    with open(path, "w") as fout:
        json.dump(metrics, fout, indent=2, sort_keys=True)
        fout.write("\n")


def stats_embedding(feats, lengths=None):
    """Mean and standard deviation of features over valid frames.

    The valid length of sentence ``i`` is ``round(lengths[i] * T)`` frames (at
    least one), as in SpeechBrain's ``StatisticsPooling``; padding frames are
    ignored. The standard deviation is the population one (divides by the
    number of valid frames), so a single valid frame gives 0, not NaN.

    Arguments
    ---------
    feats : torch.Tensor
        Features, shape (B, T, F).
    lengths : torch.Tensor, optional
        Relative valid lengths in (0, 1], shape (B,). None means all valid.

    Returns
    -------
    torch.Tensor
        ``[mean, std]`` concatenated, shape (B, 2F).

    Example
    -------
    >>> feats = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> stats_embedding(feats, torch.tensor([2 / 3]))
    tensor([[2., 1.]])
    """
    if feats.dim() != 3:
        raise ValueError(f"expected (B, T, F) features, got {tuple(feats.shape)}")
    batch, n_frames, _ = feats.shape
    if lengths is None:
        lengths = torch.ones(batch, device=feats.device)
    n_valid = torch.round(lengths.to(feats.device).float() * n_frames)
    n_valid = n_valid.clamp(min=1, max=n_frames)
    frames = torch.arange(n_frames, device=feats.device)
    mask = (frames[None, :] < n_valid[:, None]).unsqueeze(-1)
    count = n_valid.to(feats.dtype)[:, None]
    zeros = torch.zeros_like(feats)
    # where() rather than a product so that inf/NaN padding cannot leak in.
    mean = torch.where(mask, feats, zeros).sum(dim=1) / count
    centred = torch.where(mask, feats - mean[:, None, :], zeros)
    std = torch.sqrt((centred**2).sum(dim=1) / count)
    return torch.cat([mean, std], dim=1)
