#!/usr/bin/env python3
"""MoCo method choices, one change at a time against the Folder recipe's defaults.

Run (a quiet 2-core CPU needs about 8 minutes a variant; finished stages in the work folder
are reused, and the ``moco`` stage is the one ``quality.py`` and ``compare.py`` train)::

    python benchmarks/moco_choices.py [--data_folder=../shared/data/speechocean762_dev] \
        [--work_folder=results/benchmarks/speechocean762_dev] [--variants NAME ...] \
        [--seed=1986] [--device=cpu]

Every variant is ``train_moco.py hparams/moco.yaml`` on the train half of the speaker split
(the same split as ``quality.py``) with the overrides below, scored by cosine on every trial
list of the test half. One training seed each: a difference under about a point of EER is
within what one seed moves (the SpeakerRec README's five-seed spreads), so a default changes
only on a clear, consistent gain. Writes ``benchmarks/results/moco_choices.{md,json}``.
"""

import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import experiments as ex  # noqa: E402

# name: (what changes, overrides of moco.yaml)
VARIANTS = {
    "moco": ("the defaults (moco.yaml)", []),
    "moco_bn1": (
        "no split batch norm on one process (bn_splits 1: keys normalised with their queries' batch)",
        ["--bn_splits=1"],
    ),
    "moco_sym": ("symmetric loss (each view also a query)", ["--symmetric_loss=True"]),
    "moco_mlp512": ("MLP projection head 512 wide", ["--proj_hidden=512"]),
    "moco_mlp2048": ("MLP projection head 2048 wide", ["--proj_hidden=2048"]),
    "moco_t0.03": ("temperature 0.03 (sslsv's)", ["--temperature=0.03"]),
    "moco_crop1-2": (
        "crop length drawn per step in 1.0-2.0 s (mean 1.5 s, as the fixed default)",
        ["--crop_seconds=2.0", "--crop_seconds_min=1.0"],
    ),
    "moco_ssps11": (
        "SSPS from epoch 11: positives from the nearest other pseudo-class (issue 19)",
        ["--ssps_start_epoch=11"],
    ),
    "moco_ssps11_own": (
        "SSPS from epoch 11: positives from the own pseudo-class (ssps_neighbours 0)",
        ["--ssps_start_epoch=11", "--ssps_neighbours=0"],
    ),
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = ex.benchmark_parser(__doc__, "speechocean762_dev")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--test_fraction", type=float, default=0.5)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "moco_choices"))
    args = parser.parse_args(argv)
    work = os.path.abspath(args.work_folder)
    split = ex.split_corpus(work, args.data_folder, args.test_fraction, args.split_seed)
    lists = split["trial_files"]
    trials = lists["trials.txt"] if "trials.txt" in lists else lists[sorted(lists)[0]]
    runner = ex.StageRunner(work, args.device)
    rows = []
    for name in args.variants:
        desc, overrides = VARIANTS[name]
        done = ex.moco_stage(runner, args.data_folder, trials, name=name, extra=overrides)
        metrics = {
            list_name: ex.verify_run(
                runner.out(name),
                path,
                args.data_folder,
                os.path.join(work, "eval", name, list_name.replace(".txt", "")),
                args.device,
            )
            for list_name, path in lists.items()
        }
        rows.append(
            {
                "system": name,
                "description": desc,
                "overrides": overrides,
                "metrics": metrics,
                "train_seconds": done["seconds"],
                "total_seconds": done["seconds"],
            }
        )
        print(f"{name}: " + ", ".join(f"{k} EER {v['EER']:.2f}%" for k, v in metrics.items()), flush=True)
    command = "python benchmarks/moco_choices.py " + " ".join(shlex.quote(a) for a in argv)
    result = {"command": command, "machine": ex.machine_description(), "split": split, "systems": rows}
    md = [
        "# MoCo method choices",
        "",
        f"Command: `{command}`  ",
        f"Machine: {result['machine']}  ",
        f"Speakers: {ex.split_summary(split)}",
        "",
        ex.results_table(rows, list(lists)),
        "",
    ]
    md += [f"- {row['system']}: {row['description']} `{' '.join(row['overrides'])}`" for row in rows]
    md += ["", "One training seed per variant, cosine scoring; train s: wall seconds of the MoCo stage."]
    ex.write_results(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
