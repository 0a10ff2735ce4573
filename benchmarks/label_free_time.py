#!/usr/bin/env python3
"""Wall time of the whole label-free pipeline with its defaults on a full folder corpus.

Run (nothing else on the machine: it is a timing)::

    python benchmarks/label_free_time.py [--data_folder=../shared/data/speechocean762_dev] \
        [--work_folder=results/benchmarks/label_free_time] [--device=cpu]

Runs the contract command ``label_free.py hparams/label_free.yaml --data_folder=ROOT
--output_folder=OUT`` on every utterance of the corpus (no trial list: no speaker is held
out) and writes the seconds of each stage and in total, with the machine, to
``benchmarks/results/label_free_time.{md,json}``, and what the pipeline produced: each
round's pseudo-speaker count against the corpus's speaker folders (within 20 %, or the
check fails), with the clusters' NMI and purity against those folders (reports only). A
finished pipeline in the work folder is reused (its recorded seconds are reported), so
delete the work folder to time it again.
"""

import json
import os
import subprocess
import sys
import time

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
from speechbrain_moco.experiments import report as ex
from speechbrain_moco.experiments.runner import ROOT


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = ex.benchmark_parser(__doc__, "label_free_time")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "label_free_time"))
    args = parser.parse_args(argv)
    cmd = [
        "recipes/Folder/SpeakerRec/label_free.py",
        "recipes/Folder/SpeakerRec/hparams/label_free.yaml",
        f"--data_folder={os.path.abspath(args.data_folder)}",
        f"--output_folder={os.path.abspath(args.work_folder)}",
        f"--device={args.device}",
    ]
    start = time.time()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable] + cmd, cwd=ROOT, env=env, check=True)
    wall = time.time() - start
    with open(os.path.join(args.work_folder, "stages.json"), encoding="utf-8") as f:
        stages = json.load(f)["stages"]
    with open(os.path.join(args.work_folder, "moco", "run_info.json"), encoding="utf-8") as f:
        n_train = sum(1 for _ in open(json.load(f)["train_annotation"], encoding="utf-8")) - 1
    total = sum(s["seconds"] for s in stages)
    produced = {}
    for stage in (s["stage"] for s in stages if s["stage"].endswith("_labels")):
        with open(os.path.join(args.work_folder, stage, "clusters.json"), encoding="utf-8") as f:
            c = json.load(f)
        folders, count = c.get("n_speaker_folders"), c["n_clusters"]
        quality = c.get("quality_all") or {}
        produced[stage] = {
            "n_clusters": count,
            "n_speaker_folders": folders,
            "within_20_percent": bool(folders) and abs(count - folders) <= 0.2 * folders,
            "nmi": quality.get("nmi"),
            "purity": quality.get("purity"),
            "p_neighbours": (c.get("spectral") or {}).get("p_neighbours"),
        }
    result = {
        "command": ex.shown_command("python benchmarks/label_free_time.py", argv),
        "pipeline_command": ex.shown_command("python", cmd),
        "machine": ex.machine_description(),
        "training_utterances": n_train,
        "stages": stages,
        "total_seconds": round(total, 1),
        "wall_seconds_this_call": round(wall, 1),
        "reused": all(s.get("reused") for s in stages),
        "produced": produced,
    }
    md = [
        "# Label-free pipeline wall time",
        "",
        f"Command: `{result['command']}`  ",
        f"Pipeline: `{result['pipeline_command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Training utterances: {n_train} (every utterance of the corpus but the validation share)",
        "",
        "| stage | seconds |",
        "| --- | --- |",
    ]
    md += [f"| {s['stage']} | {s['seconds']:.0f} |" for s in stages]
    md += [f"| **total** | **{total:.0f}** ({total / 60:.1f} min) |", ""]
    for stage, p in produced.items():
        verdict = "within 20 %" if p["within_20_percent"] else "NOT within 20 %: the check fails"
        md.append(
            f"- {stage}: {p['n_clusters']} pseudo speakers for {p['n_speaker_folders']} speaker folders "
            f"({verdict}); against the folders (report only): NMI {p['nmi']:.3f}, purity {p['purity']:.3f}"
        )
    md.append("")
    ex.write_results(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
