#!/usr/bin/env python3
"""Recipe for the whole label-free pipeline: MoCo (SSPS on request) -> pseudo speakers -> AAM, iterated.

To run::

    python recipes/Folder/SpeakerRec/label_free.py recipes/Folder/SpeakerRec/hparams/label_free.yaml \
        --data_folder=ROOT --output_folder=OUT [--verification_file=TRIALS] [--device=cuda:0]

Each stage is the recipe command a user could type, run in turn, its output in ``OUT/<stage>``:

1. ``moco``: ``train_moco.py`` with ``moco_hparams`` and ``moco_overrides`` (plain MoCo by
   default; ``{ssps_start_epoch: N}`` adds SSPS after N - 1 epochs of plain MoCo: positives from
   other utterances of nearby pseudo-classes);
2. for each round r = 1 .. ``rounds``: ``pl<r>_labels``, ``pseudo_labels.py`` clustering every
   training utterance with the previous stage's encoder (MoCo for round 1: iterated
   pseudo-labels re-cluster with the newest encoder), then ``pl<r>``,
   ``train_speaker_embeddings.py`` on those pseudo speakers, initialised from the previous
   stage, with ``train_overrides`` (margin warm-up, loss gate: what keeps label noise from
   compounding).

``OUT/final`` links to the last stage's training folder: the pipeline's output, chosen
without looking at any trial list, which ``verify.py --pretrain_path=OUT/final`` scores like
any other run. With ``--verification_file`` every training stage scores that list and
``OUT/stages.md`` / ``stages.json`` / ``det.png`` compare them. No speaker label is read
anywhere (the pseudo-label report's NMI against the manifests' ``spk_id`` is a report only).
A finished stage (``OUT/<stage>.stage.json`` records its command and the SHA-256 of its
yaml files) is reused; an interrupted one resumes from its checkpoint; one whose earlier
stages ran again is run again; a stage whose command or yaml changed is an error. Every
SpeechBrain run option given (``--device``, ``--precision`` ...) goes to every stage.
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
import speechbrain as sb
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio import trial_list_path
from speechbrain_moco.hparams_io import load_yaml
from speechbrain_moco.run_folder import RunStatus
from speechbrain_moco.verification import read_scores
from speechbrain_moco.verification.plots import plot_det

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".."))
logger = get_logger(__name__)


def as_arguments(overrides):
    """``--key=value`` arguments of a dict of yaml overrides (None as ``null``)."""
    out = []
    for key, value in (overrides or {}).items():
        text = (
            "null" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        )
        out.append(f"--{key}={text}")
    return out


def repo_path(path):
    """A yaml's path, relative to the repository root unless absolute."""
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def yaml_digests(cmd):
    """SHA-256 of every yaml file a stage command names (a changed yaml is a changed stage)."""
    paths = [a.split("=", 1)[-1] for a in cmd if a.endswith((".yaml", ".yml"))]
    out = {}
    for path in paths:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def run_stage(name, cmd, out, log_folder, upstream_ran=False):
    """Run ``python CMD`` unless ``OUT/<name>`` finished with the same command, the same yaml
    files and the same earlier stages; returns the stage's record ``{"stage", "command",
    "seconds", "reused"}``. A finished stage whose earlier stages were just run again is
    stale: its folder is removed and it runs again."""
    folder = os.path.join(out, name)
    record_path = os.path.join(out, f"{name}.stage.json")
    command = [sys.executable] + cmd
    shown, digests = "python " + shlex.join(cmd), yaml_digests(cmd)
    if os.path.isfile(record_path):
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        if record["command"] != shown or record.get("yaml_sha256", digests) != digests:
            what = "was run as" if record["command"] != shown else "has other yaml files than when run as"
            raise ValueError(
                f"{record_path}: stage {name} {what}\n  {record['command']}\nnow\n  {shown}\n"
                f"use a new --output_folder, or delete {folder} and {record_path} (and the later "
                "stages') to redo it"
            )
        if record.get("finished") and os.path.isdir(folder) and not upstream_ran:
            logger.info("stage %s already done (%.0f s)", name, record["seconds"])
            return dict(record, reused=True)
        if record.get("finished") and upstream_ran:
            logger.warning("stage %s is older than the earlier stages just run: running it again", name)
            shutil.rmtree(folder, ignore_errors=True)
    logger.info("stage %s: %s", name, shown)
    start = time.time()
    log_path = os.path.join(log_folder, f"{name}.log")
    with open(record_path, "w", encoding="utf-8") as f:
        json.dump({"stage": name, "command": shown, "yaml_sha256": digests, "finished": False}, f, indent=2)
    with open(log_path, "a", encoding="utf-8") as log:
        proc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"stage {name} failed (exit {proc.returncode}); its log is {log_path}:\n{tail}")
    record = {
        "stage": name,
        "command": shown,
        "yaml_sha256": digests,
        "finished": True,
        "seconds": round(time.time() - start, 1),
    }
    with open(record_path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return dict(record, reused=False)


def stage_commands(hparams, run_opts):
    """``[(stage, script arguments)]`` of the pipeline, in order; the training stages'
    output folders are the stages' (``OUT/<stage>``)."""
    out, data, seed = hparams["output_folder"], hparams["data_folder"], hparams["seed"]
    # the SpeechBrain run options given on the command line, forwarded to every stage
    common = [f"--{k}={run_opts[k]}" for k in sorted(run_opts.overridden_args)]
    trials = [f"--verification_file={hparams['verification_file']}"] if hparams["verification_file"] else []
    moco = os.path.join(out, "moco")
    stages = [
        (
            "moco",
            [
                "recipes/Folder/MoCo/train_moco.py",
                repo_path(hparams["moco_hparams"]),
                f"--data_folder={data}",
                f"--output_folder={moco}",
                f"--seed={seed}",
            ]
            + trials
            + as_arguments(hparams["moco_overrides"])
            + common,
        )
    ]
    previous = moco
    for r in range(1, hparams["rounds"] + 1):
        labels, trained = os.path.join(out, f"pl{r}_labels"), os.path.join(out, f"pl{r}")
        stages.append(
            (
                f"pl{r}_labels",
                [
                    "recipes/Folder/SpeakerRec/pseudo_labels.py",
                    repo_path(hparams["pseudo_label_hparams"]),
                    f"--pretrain_path={previous}",
                    f"--output_folder={labels}",
                    # every training utterance, each round (not the rows a filter kept)
                    f"--train_annotation={moco}/manifests/train.csv",
                    f"--valid_annotation={moco}/manifests/valid.csv",
                    f"--seed={seed}",
                ]
                + as_arguments(hparams["pseudo_label_overrides"])
                + common,
            )
        )
        stages.append(
            (
                f"pl{r}",
                [
                    "recipes/Folder/SpeakerRec/train_speaker_embeddings.py",
                    repo_path(hparams["train_hparams"]),
                    f"--data_folder={data}",
                    f"--output_folder={trained}",
                    f"--init_from={previous}",
                    f"--train_annotation={labels}/train.csv",
                    f"--valid_annotation={labels}/valid.csv",
                    f"--seed={seed}",
                ]
                + trials
                + as_arguments(hparams["train_overrides"])
                + common,
            )
        )
        previous = trained
    return stages


def link_final(out, stage):
    """``OUT/final`` -> ``OUT/<stage>`` (a relative symbolic link, replaced if present)."""
    final = os.path.join(out, "final")
    if os.path.islink(final):
        os.remove(final)
    elif os.path.exists(final):
        raise FileExistsError(f"{final} exists and is not the pipeline's link: move it away")
    os.symlink(stage, final)
    return final


def compare_stages(out, records, trials):
    """Every training stage's metrics on the trial list: ``stages.{json,md}`` and ``det.png``."""
    rows, systems = [], {}
    for record in records:
        if record["stage"].endswith("_labels"):
            continue
        eval_dir = os.path.join(out, record["stage"], "eval")
        with open(os.path.join(eval_dir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        _, _, scores, labels = read_scores(os.path.join(eval_dir, "scores.txt"))
        systems[record["stage"]] = (scores, labels)
        rows.append(
            {"stage": record["stage"], "EER": metrics["EER"], "minDCF_p0.01": metrics["minDCF_p0.01"]}
        )
    for record in records:
        if record["stage"].endswith("_labels"):
            with open(os.path.join(out, record["stage"], "clusters.json"), encoding="utf-8") as f:
                clusters = json.load(f)
            record["n_clusters"] = clusters.get("n_clusters")
    plot_det(
        systems, os.path.join(out, "det.png"), title=f"DET: label-free stages on {os.path.basename(trials)}"
    )
    lines = ["| stage | EER % | minDCF0.01 |", "| --- | --- | --- |"]
    lines += [f"| {r['stage']} | {r['EER']:.2f} | {r['minDCF_p0.01']:.3f} |" for r in rows]
    with open(os.path.join(out, "stages.md"), "w", encoding="utf-8") as f:
        f.write(f"Label-free stages scored on {trials}\n\n" + "\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    hparams = load_yaml(hparams_file, overrides)
    out = os.path.abspath(hparams["output_folder"])
    hparams["output_folder"] = out
    hparams["data_folder"] = os.path.abspath(hparams["data_folder"])
    if not os.path.isdir(hparams["data_folder"]):
        raise FileNotFoundError(f"--data_folder={hparams['data_folder']} is not a folder")
    if hparams["verification_file"]:  # the stages run from the repository root
        hparams["verification_file"] = trial_list_path(hparams["verification_file"], hparams["data_folder"])
    if hparams["rounds"] < 0:
        raise ValueError(f"rounds={hparams['rounds']} must be >= 0")
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    with RunStatus(out):
        records = []
        for name, cmd in stage_commands(hparams, run_opts):
            ran = any(not r["reused"] for r in records)
            records.append(run_stage(name, cmd, out, logs, upstream_ran=ran))
        final = link_final(out, records[-1]["stage"])
        summary = {"stages": records, "final": records[-1]["stage"]}
        if hparams["verification_file"]:
            summary["metrics"] = compare_stages(out, records, hparams["verification_file"])
        with open(os.path.join(out, "stages.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    line = f"label-free pipeline done: {len(records)} stages, final = {final} -> {records[-1]['stage']}"
    if "metrics" in summary:
        line += "; " + ", ".join(f"{r['stage']} EER {r['EER']:.2f}%" for r in summary["metrics"])
    print(line)
