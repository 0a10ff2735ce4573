#!/usr/bin/env python3
"""Quality benchmark: MoCo against untrained baselines and the supervised reference.

Run (a quiet 2-core CPU needs about an hour; stages already done in the work
folder are reused, so the SpeakerRec comparison and this script can share it)::

    python benchmarks/quality.py [--data_folder=../shared/data/speechocean762_dev] \
        [--work_folder=results/benchmarks/speechocean762_dev] [--skip_embedded] \
        [--test_fraction=0.5] [--split_seed=0] [--device=cpu]

Two corpora:

1. the Folder recipe's default (embedded synthetic) corpus with its held-out
   trial list: the main job ``train_moco.py hparams/moco.yaml`` as it ships;
2. ``--data_folder`` (any folder-per-speaker corpus; default the shared
   speechocean762_dev) split by speaker: half the speakers train, every
   ``trials*.txt`` of the corpus restricted to the other half is scored (a
   corpus without lists gets a generated one).

Systems: Fbank and MFCC mean+std statistics with cosine (no training); the
ECAPA and x-vector encoders as randomly initialised (no training); MoCo
unsupervised with ECAPA (``moco.yaml``) and x-vector (``moco_xvector.yaml``);
supervised AAM-softmax on the train speakers' labels (``train_ecapa.yaml``),
the labelled reference at this scale. Every trained system uses its recipe's
default schedule; the CPU budget is what the table's seconds say.
Writes ``benchmarks/results/quality.md`` and ``quality.json``.
"""

import json
import os
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import baselines  # noqa: E402
from tools import experiments as ex  # noqa: E402

MOCO_YAML = os.path.join(ROOT, ex.FOLDER_MOCO, "hparams", "moco.yaml")
XVEC_YAML = os.path.join(ROOT, ex.FOLDER_MOCO, "hparams", "moco_xvector.yaml")
UNTRAINED = {
    "fbank_stats": ("Fbank (80) mean+std, cosine", "fbank_stats", MOCO_YAML),
    "mfcc_stats": ("MFCC (20) mean+std, cosine", "mfcc_stats", MOCO_YAML),
    "random_ecapa": ("ECAPA, random init (no training)", "random", MOCO_YAML),
    "random_xvector": ("x-vector, random init (no training)", "random", XVEC_YAML),
}
TRAINED = {  # name: (description, stage[, verify.py options[, verification yaml]])
    "moco_ecapa": ("MoCo ECAPA (moco.yaml), no labels", "moco"),
    "moco_ecapa_msub": (
        "MoCo ECAPA, cosine after subtracting the mean train-half embedding",
        "moco",
        ["--mean_subtraction=True"],
    ),
    "moco_ecapa_plda": (
        "MoCo ECAPA, PLDA trained on k-means pseudo-speakers of the train half "
        "(verification_plda.yaml, no labels)",
        "moco",
        [],
        "verification_plda.yaml",
    ),
    "moco_xvector": ("MoCo x-vector (moco_xvector.yaml), no labels", "moco_xvector"),
    "supervised_ecapa": ("supervised AAM ECAPA, train-speaker labels", "scratch"),
    "supervised_ecapa_msub": (
        "supervised AAM ECAPA, cosine after subtracting the mean train-half embedding",
        "scratch",
        ["--mean_subtraction=True"],
    ),
}


def untrained(spec):
    """An UNTRAINED spec: (description, kind, yaml path)."""
    return len(spec) == 3 and isinstance(spec[2], str)


def evaluate(systems, lists, data_folder, runner, eval_root, device, done):
    """Score every system on every list; ``systems``: name -> UNTRAINED or TRAINED spec."""
    rows = []
    for name, spec in systems.items():
        metrics, start = {}, time.time()
        for list_name, path in lists.items():
            out = os.path.join(eval_root, name, list_name.replace(".txt", ""))
            if untrained(spec):
                metrics[list_name] = baselines.evaluate_untrained(
                    spec[1], spec[2], path, data_folder, out, device
                )
            else:
                metrics[list_name] = ex.verify_run(
                    runner.out(spec[1]), path, data_folder, out, device, *spec[2:]
                )
        seconds = 0.0 if untrained(spec) else done[spec[1]]["seconds"]
        rows.append(
            {
                "system": name,
                "description": spec[0],
                "metrics": metrics,
                "train_seconds": seconds,
                "total_seconds": seconds,
                "eval_seconds": round(time.time() - start, 1),
            }
        )
        print(f"{name}: " + ", ".join(f"{k} EER {v['EER']:.2f}%" for k, v in metrics.items()), flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = ex.benchmark_parser(__doc__, "speechocean762_dev")
    parser.add_argument("--test_fraction", type=float, default=0.5)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--skip_embedded", action="store_true")
    parser.add_argument("--stage_args", default="", help="extra arguments for every training stage")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "quality"))
    args = parser.parse_args(argv)
    extra = shlex.split(args.stage_args)
    result = {
        "command": "python benchmarks/quality.py " + " ".join(shlex.quote(a) for a in argv),
        "machine": ex.machine_description(),
        "corpora": {},
    }
    md = ["# Quality benchmark", "", f"Command: `{result['command']}`  ", f"Machine: {result['machine']}", ""]

    if not args.skip_embedded:  # the Folder recipe's main job on its default corpus
        runner = ex.StageRunner(os.path.join(args.work_folder, "embedded"), args.device)
        done = {
            "embedded_moco": runner.run(
                "embedded_moco",
                [f"{ex.FOLDER_MOCO}/train_moco.py", f"{ex.FOLDER_MOCO}/hparams/moco.yaml"] + extra,
            )
        }
        corpus = os.path.join(ROOT, "results", "embedded_corpus")
        lists = {"trials.txt": os.path.join(corpus, "trials.txt")}
        systems = {k: UNTRAINED[k] for k in ("fbank_stats", "mfcc_stats", "random_ecapa")}
        for name in ("moco_ecapa", "moco_ecapa_msub", "moco_ecapa_plda"):  # the main job's run
            systems[name] = (TRAINED[name][0], "embedded_moco") + TRAINED[name][2:]
        rows = evaluate(systems, lists, corpus, runner, os.path.join(runner.work, "eval"), args.device, done)
        result["corpora"]["embedded"] = {"data_folder": corpus, "systems": rows, "trials": lists}
        with open(os.path.join(corpus, "corpus_info.json"), encoding="utf-8") as f:
            options = json.load(f)["options"]
        n_trials = rows[0]["metrics"]["trials.txt"]["n_trials"]
        result["corpora"]["embedded"]["corpus_options"] = options
        md += [
            "## Default corpus: the embedded synthetic corpus (main job as shipped)",
            "",
            "`python recipes/Folder/MoCo/train_moco.py recipes/Folder/MoCo/hparams/moco.yaml` "
            f"({options['n_speakers']} synthetic speakers x {options['utts_per_speaker']} "
            f"utterances, {options['n_speakers'] - options['n_held_out']} train MoCo, "
            f"{options['n_held_out']} held out for {n_trials} trials)",
            "",
            ex.results_table(rows, list(lists)),
            "",
        ]

    work = os.path.abspath(args.work_folder)
    split = ex.split_corpus(work, args.data_folder, args.test_fraction, args.split_seed)
    lists = split["trial_files"]
    trials = lists["trials.txt"] if "trials.txt" in lists else lists[sorted(lists)[0]]
    runner = ex.StageRunner(work, args.device)
    done = {
        "moco": ex.moco_stage(runner, args.data_folder, trials, extra=extra),
        "moco_xvector": ex.moco_stage(
            runner, args.data_folder, trials, "moco_xvector.yaml", "moco_xvector", extra=extra
        ),
        "scratch": ex.supervised_stage(runner, args.data_folder, trials, "scratch", extra=extra),
    }
    systems = dict(UNTRAINED, **TRAINED)
    rows = evaluate(
        systems, lists, args.data_folder, runner, os.path.join(work, "eval_quality"), args.device, done
    )
    result["corpora"]["split"] = {
        "data_folder": os.path.abspath(args.data_folder),
        "systems": rows,
        "split": {k: split[k] for k in ("seed", "test_fraction", "trials")},
        "n_train_speakers": len(split["train_speakers"]),
        "n_test_speakers": len(split["test_speakers"]),
    }
    md += [
        f"## {os.path.basename(os.path.normpath(args.data_folder))}, split by speaker",
        "",
        ex.split_summary(split),
        "",
        ex.results_table(rows, list(lists)),
        "",
        "train s: wall seconds of the training stage on this machine (recipe defaults: 40 epochs, "
        "batch 32; MoCo: two disjoint 1.5 s crops, supervised: one 2 s crop); untrained systems "
        "need none (a `_msub` or `_plda` row reuses its stage). "
        "Scoring, all label-free: encoders by cosine (`_msub`: after subtracting the mean embedding "
        "of the train half's utterances, as wespeaker scores by default; `_plda`: PLDA fitted on "
        "k-means pseudo-speakers of those utterances); statistics by cosine "
        "after z-normalising each dimension with the mean and std of the scored utterances' own "
        "statistics (without it the largest dimensions swamp the cosine).",
        "",
    ]
    ex.write_results(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
