#!/usr/bin/env python3
"""Quality benchmark: MoCo against untrained baselines and the supervised reference, over
training seeds, with intervals.

Run (a quiet 2-core CPU needs about 40 minutes a seed; stages already done in the work
folder are reused, so ``compare.py`` and this script can share it)::

    python benchmarks/quality.py [--data_folder=../shared/data/speechocean762_dev] \
        [--work_folder=results/benchmarks/speechocean762_dev] [--seeds 1986 1987 1988] \
        [--skip_embedded] [--test_fraction=0.5] [--split_seed=0] [--device=cpu]

Two corpora:

1. the Folder recipe's default (embedded synthetic) corpus with its held-out trial list:
   the main job ``train_moco.py hparams/moco.yaml`` as it ships, once per seed;
2. ``--data_folder`` (any folder-per-speaker corpus; default the shared
   speechocean762_dev) split by speaker (``data_prep.speaker_split``): half the speakers
   train, the other half is scored on every pair of its utterances (``trials_all.txt``, and
   ``trials_all_hard.txt`` when the corpus has a ``speakers.tsv``).

Systems: Fbank and MFCC mean+std statistics with cosine, the ECAPA and x-vector encoders as
randomly initialised (no training, no seed); MoCo with ECAPA (``moco.yaml``: cosine, cosine
after mean subtraction, PLDA on k-means pseudo-speakers) and x-vector
(``moco_xvector.yaml``); supervised AAM-softmax on the train speakers' labels
(``train_ecapa.yaml``). Every trained system runs with each seed of ``--seeds``; the tables
give the mean over seeds with a 95 % interval over the test speakers and the seeds
(``speechbrain_moco.experiments.evidence``) and the standard deviation over seeds; then the
paired comparisons of ``COMPARISONS`` (B - A over the same speaker resamples, seeds paired),
each with its verdict: a winner only where the interval excludes 0. Writes
``benchmarks/results/quality.md`` and ``quality.json``.
"""

import json
import os
import shlex
import sys

import numpy as np

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
from data_prep.speaker_split import split_corpus
from speechbrain_moco.experiments import baselines, report, stages
from speechbrain_moco.experiments.evidence import Evidence, comparison_table, summary_table
from speechbrain_moco.experiments.runner import ROOT, StageRunner

MOCO_YAML = os.path.join(ROOT, stages.FOLDER_MOCO, "hparams", "moco.yaml")
XVEC_YAML = os.path.join(ROOT, stages.FOLDER_MOCO, "hparams", "moco_xvector.yaml")
UNTRAINED = {
    "fbank_stats": ("Fbank (80) mean+std, cosine", "fbank_stats", MOCO_YAML),
    "mfcc_stats": ("MFCC (20) mean+std, cosine", "mfcc_stats", MOCO_YAML),
    "random_ecapa": ("ECAPA, random init (no training)", "random", MOCO_YAML),
    "random_xvector": ("x-vector, random init (no training)", "random", XVEC_YAML),
}
TRAINED = {  # name: (description, training stage, verification yaml, verify.py options)
    "moco_ecapa": ("MoCo ECAPA (moco.yaml), no labels", "moco", "verification_cosine.yaml", []),
    "moco_ecapa_msub": (
        "MoCo ECAPA, cosine after subtracting the mean train-half embedding",
        "moco",
        "verification_cosine.yaml",
        ["--mean_subtraction=True"],
    ),
    "moco_ecapa_plda": (
        "MoCo ECAPA, PLDA on k-means pseudo-speakers of the train half (no labels)",
        "moco",
        "verification_plda.yaml",
        [],
    ),
    "moco_xvector": (
        "MoCo x-vector (moco_xvector.yaml), no labels",
        "moco_xvector",
        "verification_cosine.yaml",
        [],
    ),
    "supervised_ecapa": (
        "supervised AAM ECAPA, train-speaker labels",
        "scratch",
        "verification_cosine.yaml",
        [],
    ),
    "supervised_ecapa_msub": (
        "supervised AAM ECAPA, cosine after subtracting the mean train-half embedding",
        "scratch",
        "verification_cosine.yaml",
        ["--mean_subtraction=True"],
    ),
}

# the paired comparisons each table states (B against A): does training beat the bars, which
# back-end, which encoder, and the supervised reference against MoCo
COMPARISONS = [
    ("moco_ecapa", "mfcc_stats"),
    ("moco_ecapa", "random_ecapa"),
    ("moco_ecapa_msub", "moco_ecapa"),
    ("moco_ecapa_plda", "moco_ecapa"),
    ("moco_xvector", "moco_ecapa"),
    ("supervised_ecapa", "moco_ecapa"),
]

# scorings that compare.py also makes keep its names, so a shared work folder scores once
SCORE_NAME = {
    "moco_ecapa": "moco",
    "moco_ecapa_plda": "moco_plda",
    "moco_xvector": "moco_xvector",
    "supervised_ecapa": "scratch",
}


def score_untrained(evidence, systems, lists, data_folder, eval_root, device):
    """Score each untrained system on each list (no seed)."""
    for name in systems:
        _, kind, yaml = UNTRAINED[name]
        for list_name, path in lists.items():
            out = os.path.join(eval_root, name, list_name.replace(".txt", ""))
            baselines.evaluate_untrained(kind, yaml, path, data_folder, out, device)
            evidence.add(name, list_name, 0, None, out)


def train_and_score(runner, evidence, systems, seeds, data_folder, trials, lists, extra, prefix="f0"):
    """Train each seed's stages (MoCo ECAPA, MoCo x-vector, supervised) and score every
    system on every list; returns ``{stage: [seconds per seed]}``."""
    seconds = {}
    for seed in seeds:
        own = [a for a in extra if not a.startswith("--seed=")] + [f"--seed={seed}"]
        base = f"{prefix}/s{seed}"
        needed = {TRAINED[n][1] for n in systems}
        for stage in ("moco", "moco_xvector", "scratch"):
            if stage not in needed:
                continue
            if stage == "scratch":
                done = stages.supervised_stage(runner, f"{base}/scratch", data_folder, trials, extra=own)
            else:
                done = stages.moco_stage(runner, f"{base}/{stage}", data_folder, trials, f"{stage}.yaml", own)
            seconds.setdefault(stage, []).append(done["seconds"])
        for name in systems:
            _, stage, yaml, options = TRAINED[name]
            for list_name, path in lists.items():
                score = f"{base}/eval/{SCORE_NAME.get(name, name)}/{list_name.replace('.txt', '')}"
                stages.score_stage(runner, score, f"{base}/{stage}", path, data_folder, yaml, options)
                evidence.add(name, list_name, 0, seed, runner.out(score))
    return seconds


def comparisons(evidence, systems, lists):
    """Paired comparisons of ``COMPARISONS`` among ``systems`` on each list: rows for
    ``comparison_table`` and their JSON."""
    rows = [
        (b, a, n, evidence.compare(a, b, n))
        for b, a in COMPARISONS
        if a in systems and b in systems
        for n in lists
    ]
    as_json = [{"B": b, "A": a, "list": n, **d} for b, a, n, d in rows]
    return rows, as_json


def section(evidence, systems, lists, seconds, described, rows):
    """The markdown tables of one corpus: systems, paired comparisons, training seconds."""
    table = summary_table(evidence, systems, list(lists), described)
    train = ", ".join(f"{k} {np.mean(v):.0f} s" for k, v in seconds.items())
    return [
        table,
        "",
        "Paired comparisons (B - A in EER points, the same trials and speaker resamples, seeds "
        "paired; an untrained system pairs with every seed). A verdict names a winner only when "
        "the interval excludes 0; `resolvable` is the interval's half-width, the smallest "
        "difference this protocol detects.",
        "",
        comparison_table(rows),
        "",
        f"Mean training wall time per seed on this machine: {train}.",
        "",
    ]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = report.benchmark_parser(__doc__, "speechocean762_dev")
    parser.add_argument("--test_fraction", type=float, default=0.5)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1986, 1987, 1988])
    parser.add_argument("--skip_embedded", action="store_true")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--stage_args", default="", help="extra arguments for every training stage")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "quality"))
    args = parser.parse_args(argv)
    extra = shlex.split(args.stage_args)
    described = {k: v[0] for k, v in dict(UNTRAINED, **TRAINED).items()}
    result = {
        "command": report.shown_command("python benchmarks/quality.py", argv),
        "machine": report.machine_description(),
        "seeds": args.seeds,
        "corpora": {},
    }
    md = [
        "# Quality benchmark",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Seeds: {', '.join(map(str, args.seeds))}. EER in percent: mean over seeds [95 % interval over "
        f"the test speakers ({args.resamples} resamples) and the seeds]; sd: standard deviation over seeds.",
        "",
    ]

    if not args.skip_embedded:  # the Folder recipe's main job on its default corpus, per seed
        runner = StageRunner(os.path.join(args.work_folder, "embedded"), args.device)
        corpus = os.path.join(ROOT, "results", "embedded_corpus")
        evidence = Evidence(args.resamples)
        seconds = {"main job": []}
        for seed in args.seeds:
            own = [a for a in extra if not a.startswith("--seed=")] + [f"--seed={seed}"]
            done = runner.run(
                f"s{seed}/main_job",
                [f"{stages.FOLDER_MOCO}/train_moco.py", f"{stages.FOLDER_MOCO}/hparams/moco.yaml"] + own,
            )
            seconds["main job"].append(done["seconds"])
            for name in ("moco_ecapa", "moco_ecapa_msub", "moco_ecapa_plda"):
                _, _, yaml, options = TRAINED[name]
                score = f"s{seed}/eval/{name}"
                path = os.path.join(corpus, "trials.txt")
                stages.score_stage(runner, score, f"s{seed}/main_job", path, corpus, yaml, options)
                evidence.add(name, "trials.txt", 0, seed, runner.out(score))
        lists = {"trials.txt": os.path.join(corpus, "trials.txt")}
        untrained = ("fbank_stats", "mfcc_stats", "random_ecapa")
        score_untrained(evidence, untrained, lists, corpus, os.path.join(runner.work, "eval"), args.device)
        with open(os.path.join(corpus, "corpus_info.json"), encoding="utf-8") as f:
            options = json.load(f)["options"]
        systems = list(untrained) + ["moco_ecapa", "moco_ecapa_msub", "moco_ecapa_plda"]
        rows, compared = comparisons(evidence, systems, lists)
        result["corpora"]["embedded"] = {
            "corpus_options": options,
            "systems": {n: evidence.summary(n, "trials.txt") for n in systems},
            "comparisons": compared,
            "train_seconds": seconds,
        }
        md += [
            "## Default corpus: the embedded synthetic corpus (main job as shipped)",
            "",
            "`python recipes/Folder/MoCo/train_moco.py recipes/Folder/MoCo/hparams/moco.yaml --seed=S` "
            f"({options['n_speakers']} synthetic speakers x {options['utts_per_speaker']} "
            f"utterances, {options['n_speakers'] - options['n_held_out']} train MoCo, "
            f"{options['n_held_out']} held out for its trials.txt)",
            "",
        ] + section(evidence, systems, lists, seconds, described, rows)

    work = os.path.abspath(args.work_folder)
    split = split_corpus(work, args.data_folder, args.test_fraction, args.split_seed)
    names = [n for n in ("trials_all.txt", "trials_all_hard.txt") if n in split["trial_files"]]
    lists = {n: split["trial_files"][n] for n in names}
    trials = split["trial_files"]["trials.txt" if "trials.txt" in split["trial_files"] else names[0]]
    runner = StageRunner(work, args.device)
    evidence = Evidence(args.resamples)
    score_untrained(
        evidence, list(UNTRAINED), lists, args.data_folder, os.path.join(work, "eval_quality"), args.device
    )
    seconds = train_and_score(
        runner, evidence, list(TRAINED), args.seeds, args.data_folder, trials, lists, extra
    )
    systems = list(UNTRAINED) + list(TRAINED)
    rows, compared = comparisons(evidence, systems, lists)
    result["corpora"]["split"] = {
        "data_folder": report.shown_path(args.data_folder),
        "split": {k: split[k] for k in ("seed", "test_fraction", "trials")},
        "n_train_speakers": len(split["train_speakers"]),
        "n_test_speakers": len(split["test_speakers"]),
        "systems": {n: {ln: evidence.summary(n, ln) for ln in lists} for n in systems},
        "comparisons": compared,
        "train_seconds": seconds,
    }
    md += [
        f"## {os.path.basename(os.path.normpath(args.data_folder))}, split by speaker",
        "",
        report.split_summary(split),
        "",
    ] + section(evidence, systems, lists, seconds, described, rows)
    md += [
        "Training: recipe defaults (40 epochs, batch 32; MoCo: two 2 s crops, supervised: one 2 s "
        "crop); untrained systems need none. Scoring, all label-free: encoders by cosine (`_msub`: "
        "after subtracting the mean embedding of the train half's utterances, as wespeaker scores by "
        "default; `_plda`: PLDA fitted on k-means pseudo-speakers of those utterances); statistics by "
        "cosine after z-normalising each dimension with the mean and std of the scored utterances' "
        "own statistics.",
        "",
    ]
    report.write_results(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
