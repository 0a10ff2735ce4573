"""Paired comparison of two scored folders on the same trial list.

``python -m speechbrain_moco.compare EVAL_A EVAL_B [--json OUT] [--resamples N] [--seed S]``

``EVAL_A`` and ``EVAL_B`` are folders that scoring wrote (``verify.py``, a training run's
``eval/``): their ``scores.txt`` must hold the same trials (in any order). Prints both
EERs with their 95 % intervals, the difference B - A with its 95 % interval from a
paired bootstrap (the same speaker resamples for both), the half-width of that interval
(the smallest difference this list resolves) and a verdict: ``better`` (B's EER lower) or
``worse`` only when the interval excludes 0, else ``not resolved``. The resampling
defaults to what ``EVAL_A/metrics.json`` used (1000 resamples, seed 0 without one).

Example
-------
>>> import os
>>> from speechbrain_moco.verification import write_scores
>>> root = getfixture("tmp_path")
>>> trials = [(i % 2, f"s{i % 7}/a{i}", f"s{(i + i % 2) % 7}/b{i}") for i in range(200)]
>>> for name, gap in (("a", 0.5), ("b", 3.0)):
...     os.makedirs(root / name)
...     scores = [t[0] * gap + (i % 10) / 10 for i, t in enumerate(trials)]
...     write_scores(root / name / "scores.txt", trials, scores)
>>> result = compare_folders(root / "a", root / "b", n_resamples=200)
>>> result["verdict"], result["EER_A"], result["EER_B"]
('better', 20.0, 0.0)
"""

import argparse
import json
import os
import sys

import numpy as np

from speechbrain_moco.verification.bootstrap import compare_scores
from speechbrain_moco.verification.score_files import read_scores


def aligned_scores(folder_a, folder_b):
    """Scores of two folders on the same trials, in A's order: ``(enrol, test, labels,
    scores_a, scores_b)``. A trial only one folder has, or a label they disagree on, is a
    ``ValueError`` naming both folders."""
    trials = {}
    for folder in (folder_a, folder_b):
        path = os.path.join(folder, "scores.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: not a scored folder (no scores.txt)")
        trials[folder] = read_scores(path)
    enrol, test, scores_a, labels = trials[folder_a]
    e_b, t_b, s_b, l_b = trials[folder_b]
    position = {(e, t): i for i, (e, t) in enumerate(zip(e_b, t_b))}
    if len(position) != len(e_b) or len(e_b) != len(enrol):
        raise ValueError(
            f"{folder_a} has {len(enrol)} trials, {folder_b} {len(e_b)} ({len(position)} distinct): "
            "compare two scorings of one trial list"
        )
    try:
        index = np.fromiter((position[(e, t)] for e, t in zip(enrol, test)), np.int64, len(enrol))
    except KeyError as missing:
        raise ValueError(
            f"trial {missing.args[0]} of {folder_a} is not in {folder_b}: compare two scorings of "
            "one trial list"
        ) from None
    if not np.array_equal(l_b[index], labels):
        raise ValueError(f"{folder_a} and {folder_b} label some trials differently")
    return enrol, test, labels, scores_a, s_b[index]


def compare_folders(folder_a, folder_b, n_resamples=None, seed=None):
    """The paired comparison of two scored folders (see the module docstring)."""
    enrol, test, labels, scores_a, scores_b = aligned_scores(folder_a, folder_b)
    settings = {}
    metrics_path = os.path.join(folder_a, "metrics.json")
    if os.path.isfile(metrics_path):
        with open(metrics_path, encoding="utf-8") as f:
            settings = json.load(f)
    n_resamples = n_resamples or settings.get("ci_resamples", 1000)
    seed = settings.get("ci_seed", 0) if seed is None else seed
    result = compare_scores(scores_a, scores_b, labels, enrol, test, n_resamples, seed)
    result.update(
        A=os.path.abspath(folder_a),
        B=os.path.abspath(folder_b),
        n_trials=int(labels.size),
        # two scorings of one system (another runtime, an export) should agree trial by trial
        max_abs_score_difference=float(np.abs(np.asarray(scores_a) - np.asarray(scores_b)).max()),
    )
    return result


def summary_lines(r):
    """The console report of :func:`compare_folders`' result."""
    return [
        f"A: {r['A']}: EER {r['EER_A']:.2f}% [{r['EER_A_ci95'][0]:.2f}, {r['EER_A_ci95'][1]:.2f}]",
        f"B: {r['B']}: EER {r['EER_B']:.2f}% [{r['EER_B_ci95'][0]:.2f}, {r['EER_B_ci95'][1]:.2f}]",
        f"B - A: {r['difference']:+.2f} points, 95 % interval [{r['difference_ci95'][0]:+.2f}, "
        f"{r['difference_ci95'][1]:+.2f}] ({r['ci_method']} bootstrap, {r['ci_resamples']} resamples of "
        f"{r['ci_units']} {r['ci_method']}s, {r['n_trials']} trials); resolvable: +-{r['half_width']:.2f}",
        f"verdict: B is {r['verdict']}" if r["verdict"] != "not resolved" else "verdict: not resolved",
    ] + (
        [f"largest score difference, trial by trial: {r['max_abs_score_difference']:.2e}"]
        if "max_abs_score_difference" in r
        else []
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("eval_a", help="scored folder A (scores.txt)")
    parser.add_argument("eval_b", help="scored folder B, on the same trial list")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default: A's)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the resamples (default: A's)")
    args = parser.parse_args(argv)
    try:
        result = compare_folders(args.eval_a, args.eval_b, args.resamples, args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(summary_lines(result)))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
