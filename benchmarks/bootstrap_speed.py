#!/usr/bin/env python3
"""How long the speaker bootstrap of a metrics file takes on a list the size of the
all-pairs lists, and that its fast path equals weighting every trial.

Run (a quiet machine: a timing beside another job is not a figure)::

    python benchmarks/bootstrap_speed.py [--data_folder=../shared/data/speechocean762_dev] \
        [--resamples 1000] [--repeats 3]

The trial list is the speaker split's ``trials_all.txt`` of ``--data_folder`` (376,278
trials of 62 speakers on speechocean762_dev); without the corpus, a generated list of the
same shape (62 speakers x 14 utterances, every pair). Scores are synthetic (targets shifted
by 2.5 standard deviations, a speaker effect, rounded to 4 decimals), so the timing does not
depend on a trained model. Reported: seconds per ``bootstrap_intervals`` call (median of
``--repeats``), the resulting intervals, and the largest difference between the fast
speaker-pair path and weighting every trial on the first 100 resamples (the check).
Writes ``benchmarks/results/bootstrap_speed.{md,json}``.
"""

import itertools
import os
import sys
import time

import numpy as np

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
from data_prep.speaker_split import split_corpus
from speechbrain_moco.dataio.trials import read_trials
from speechbrain_moco.experiments import report
from speechbrain_moco.experiments.runner import ROOT
from speechbrain_moco.verification import bootstrap as B


def trial_list(data_folder, work):
    """``(labels, enrol, test, where)``: the split's all-pairs list, or a generated one."""
    if os.path.isdir(data_folder):
        split = split_corpus(work, data_folder)
        trials = read_trials(split["trial_files"]["trials_all.txt"])
        where = f"{report.shown_path(data_folder)} split, trials_all.txt"
    else:
        names = [f"s{s:02d}/u{u:02d}" for s in range(62) for u in range(14)]
        trials = [(int(a[:3] == b[:3]), a, b) for a, b in itertools.combinations(names, 2)]
        where = "generated: 62 speakers x 14 utterances, every pair"
    labels = np.array([t[0] for t in trials])
    return labels, [t[1] for t in trials], [t[2] for t in trials], where


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = report.benchmark_parser(__doc__, "bootstrap_speed")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check_resamples", type=int, default=100, help="resamples of the exactness check")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "bootstrap_speed"))
    args = parser.parse_args(argv)
    labels, enrol, test, where = trial_list(args.data_folder, args.work_folder)
    rng = np.random.default_rng(0)
    speakers = B.trial_speakers(enrol, test)[0]
    effect = rng.normal(0, 0.5, speakers.max() + 1)[speakers]
    scores = np.round(rng.normal(0, 1, labels.size) + labels * (2.5 + effect), 4)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ci = B.bootstrap_intervals(scores, labels, enrol, test, args.resamples, seed=0)
        seconds.append(time.perf_counter() - start)
    check = B.Resampler(labels, enrol, test, args.check_resamples, seed=1)
    fast = B.bootstrap_draws(scores, labels, check)
    saved = B.PAIR_GRID_MAX
    B.PAIR_GRID_MAX = 0  # every trial weighted: the reference
    start = time.perf_counter()
    direct = B.bootstrap_draws(scores, labels, check)
    direct_seconds = time.perf_counter() - start
    B.PAIR_GRID_MAX = saved
    result = {
        "command": report.shown_command("python benchmarks/bootstrap_speed.py", argv),
        "machine": report.machine_description(),
        "trials": where,
        "n_trials": int(labels.size),
        "n_target": int(labels.sum()),
        "n_speakers": int(speakers.max() + 1),
        "resamples": args.resamples,
        "seconds": [round(s, 3) for s in seconds],
        "median_seconds": round(float(np.median(seconds)), 3),
        "check_resamples": args.check_resamples,
        "direct_seconds": round(direct_seconds, 3),
        "max_abs_difference_eer": float(np.abs(fast[0] - direct[0]).max()),
        "max_abs_difference_mindcf": float(np.abs(fast[1] - direct[1]).max()),
        "intervals": {k: ci[k] for k in ("EER_ci95", "minDCF_p0.01_ci95")},
    }
    lines = [
        "# Speaker bootstrap: speed and exactness",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Trials: {where}: {result['n_trials']} ({result['n_target']} target), "
        f"{result['n_speakers']} speakers; synthetic scores",
        "",
        f"- {args.resamples} resamples: {result['median_seconds']:.2f} s (median of {args.repeats}: "
        + ", ".join(f"{s:.2f}" for s in result["seconds"])
        + ")",
        f"- weighting every trial (the reference), {args.check_resamples} resamples: "
        f"{result['direct_seconds']:.1f} s",
        f"- fast path minus reference over those {args.check_resamples}: EER "
        f"{result['max_abs_difference_eer']:.2e} points, "
        f"minDCF {result['max_abs_difference_mindcf']:.2e}",
        f"- EER 95 % interval {ci['EER_ci95'][0]:.3f} - {ci['EER_ci95'][1]:.3f} %",
    ]
    report.write_results(args.out, result, lines)
    return result


if __name__ == "__main__":
    main()
