#!/usr/bin/env python3
"""Does an exported model decide as the recipe does? Scores and decisions through SpeechBrain.

Run (after the main job, whose run folder is the default)::

    python benchmarks/export_check.py [--run=results/moco_ecapa/1986] [--data_folder=ROOT]
        [--operating_point=eer] [--out=benchmarks/results/export_check]

Exports the run (``python -m speechbrain_moco.export``), then scores every trial of the
run's own list (``eval/scores.txt``) file by file through SpeechBrain's ``foreign_class``
with the folder's ``interface.py`` and through SpeechBrain's plain ``SpeakerRecognition``,
and compares with the recipe: the largest score difference, and the false-accept and miss
rates of each at its decision threshold (the exported one; SpeechBrain's fixed 0.25 for the
plain class). For reference it also embeds the trial utterances in padded batches of 8 (the
extraction before it stopped padding) and reports how far those scores move.
Writes ``OUT.md`` and ``OUT.json``.
"""

import argparse
import os
import subprocess
import sys

import torch  # noqa: E402
from speechbrain.dataio.batch import PaddedBatch  # noqa: E402
from speechbrain.inference.interfaces import foreign_class  # noqa: E402
from speechbrain.inference.speaker import SpeakerRecognition  # noqa: E402

from speechbrain_moco.dataio import utterance_dataset  # noqa: E402
from speechbrain_moco.experiments.report import machine_description, write_results
from speechbrain_moco.experiments.runner import ROOT
from speechbrain_moco.run_folder import read_run_info  # noqa: E402
from speechbrain_moco.verification import error_rates, load_trained_encoder, read_scores  # noqa: E402


def padded_scores(run, csv_path, data_folder, pairs):
    """Cosine scores of ``pairs`` from embeddings of padded, length-sorted batches of 8."""
    embed_fn, hp = load_trained_encoder(run)
    data = utterance_dataset(csv_path, data_folder, hp["sample_rate"]).filtered_sorted(sort_key="duration")
    emb = {}
    loader = torch.utils.data.DataLoader(data, batch_size=8, collate_fn=PaddedBatch)
    with torch.no_grad():
        for batch in loader:
            wavs, lens = batch.sig
            for uid, e in zip(batch.id, embed_fn(wavs, lens)):
                emb[uid] = e
    return [float(torch.nn.functional.cosine_similarity(emb[a], emb[b], dim=0)) for a, b in pairs]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=os.path.join(ROOT, "results", "moco_ecapa", "1986"))
    parser.add_argument("--data_folder", default=None, help="default: the run's own (run_info.json)")
    parser.add_argument("--operating_point", default="eer")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "export_check"))
    args = parser.parse_args(argv)
    run = os.path.abspath(args.run)
    data_folder = args.data_folder or read_run_info(run)["data_folder"]
    model_dir = os.path.join(run, "export")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_moco.export",
            f"--pretrain_path={run}",
            f"--model_dir={model_dir}",
            f"--operating_point={args.operating_point}",
        ],
        cwd=ROOT,
        check=True,
    )
    interface = foreign_class(
        source=model_dir, pymodule_file="interface.py", classname="MoCoSpeakerRecognition", savedir=model_dir
    )
    plain = SpeakerRecognition.from_hparams(source=model_dir)
    enrol, test, recipe, labels = read_scores(os.path.join(run, "eval", "scores.txt"))
    ours, ours_same, theirs, theirs_same = [], [], [], []
    for a, b in zip(enrol, test):
        pa, pb = os.path.join(data_folder, a), os.path.join(data_folder, b)
        score, same = interface.verify_files(pa, pb)
        ours.append(float(score.reshape(-1)[0]))
        ours_same.append(bool(same.reshape(-1)[0]))
        score, same = plain.verify_files(pa, pb)
        theirs.append(float(score.reshape(-1)[0]))
        theirs_same.append(bool(same.reshape(-1)[0]))
    padded = padded_scores(
        run, os.path.join(run, "eval", "trial_utts.csv"), data_folder, list(zip(enrol, test))
    )
    threshold = interface.threshold
    fa_miss = {
        "recipe scores.txt at the exported threshold": error_rates(recipe, labels, threshold),
        "foreign_class(interface.py).verify_files": (
            sum(s and y == 0 for s, y in zip(ours_same, labels)) / sum(labels == 0),
            sum((not s) and y == 1 for s, y in zip(ours_same, labels)) / sum(labels == 1),
        ),
        "SpeakerRecognition.verify_files (SpeechBrain's 0.25)": (
            sum(s and y == 0 for s, y in zip(theirs_same, labels)) / sum(labels == 0),
            sum((not s) and y == 1 for s, y in zip(theirs_same, labels)) / sum(labels == 1),
        ),
    }
    result = {
        "command": "python benchmarks/export_check.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_description(),
        "run": run,
        "n_trials": len(recipe),
        "threshold": threshold,
        "operating_point": args.operating_point,
        "max_abs_score_difference": {
            "interface vs recipe": max(abs(x - y) for x, y in zip(ours, recipe)),
            "SpeakerRecognition vs recipe": max(abs(x - y) for x, y in zip(theirs, recipe)),
            "padded batches of 8 vs single files": max(abs(x - y) for x, y in zip(padded, theirs)),
        },
        "false_accept_and_miss_rates": fa_miss,
    }
    lines = [
        "# Export check",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Run: `{run}`, {len(recipe)} trials of its evaluation list; exported threshold "
        f"{threshold:.4f} ({args.operating_point})",
        "",
        "| scored by | false accepts | misses |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {k} | {100 * v[0]:.2f} % | {100 * v[1]:.2f} % |" for k, v in fa_miss.items()]
    lines += ["", "| largest score difference | |", "| --- | --- |"]
    lines += [f"| {k} | {v:.2e} |" for k, v in result["max_abs_score_difference"].items()]
    write_results(args.out, result, lines)
    return result


if __name__ == "__main__":
    main()
