"""Score and metric files: ``scores.txt`` (``enrol test score label`` per trial) and
``metrics.json``, and the mapping of trials to embedding rows."""

import json
import os

import numpy as np
import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


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
    return (
        torch.tensor([position[t[1]] for t in trials], dtype=torch.long),
        torch.tensor([position[t[2]] for t in trials], dtype=torch.long),
    )


def write_scores(path, trials, scores):
    """Writes one ``enrol test score label`` line per trial.

    Scores are written exactly (``repr`` of the float), so a threshold read back from the
    file decides every trial as the scores in memory do.

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
    'a b 0.5 1\\n'
    """
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if len(scores) != len(trials):
        raise ValueError(f"{len(trials)} trials but {len(scores)} scores")
    tmp = f"{path}.tmp"  # written whole, then renamed: no reader ever sees half a file
    with open(tmp, "w") as fout:
        fout.writelines(
            f"{enrol_id} {test_id} {float(score)!r} {int(label)}\n"
            for (label, enrol_id, test_id), score in zip(trials, scores)
        )
    os.replace(tmp, path)
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
    return (enrol_ids, test_ids, np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64))


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
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fout:
        json.dump(metrics, fout, indent=2, sort_keys=True)
        fout.write("\n")
    os.replace(tmp, path)
