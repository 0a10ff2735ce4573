#!/usr/bin/env python3
"""Recipe for the whole label-free pipeline: MoCo -> pseudo speakers -> AAM, iterated.

To run::

    python recipes/Folder/SpeakerRec/label_free.py recipes/Folder/SpeakerRec/hparams/label_free.yaml \
        --data_folder=ROOT --output_folder=OUT [--verification_file=TRIALS] [--device=cuda:0]

Each stage is the recipe command a user could type, run in turn, its output in ``OUT/<stage>``:

1. ``moco``: ``train_moco.py`` with ``moco_hparams`` and ``moco_overrides`` (plain MoCo by
   default; ``moco_hparams: recipes/Folder/MoCo/hparams/moco_ssps.yaml`` trains MoCo with
   SSPS, positives from other utterances of a pseudo-class);
2. for each round r = 1 .. ``rounds``: ``pl<r>_labels``, ``pseudo_labels.py`` clustering every
   training utterance with the previous stage's encoder (MoCo for round 1: iterated
   pseudo-labels re-cluster with the newest encoder), then ``pl<r>``,
   ``train_speaker_embeddings.py`` on those pseudo speakers, initialised from the previous
   stage, with ``train_overrides``. By default these turn on the label-noise measures of
   the field's pseudo-label systems: a 5-epoch margin warm-up, the dynamic loss gate (a
   two-component GMM of the previous epoch's log losses) from epoch 5, sub-centre AAM
   (K = 3) and L2-SP towards the initialisation (0.01); the clustering is spectral with the
   eigengap count, keeping the 80 % most central members of each pseudo speaker
   (``pseudo_labels.yaml``). Plain AAM: ``--train_overrides="{margin_warmup_epochs: 0,
   loss_gate: null, aam_subcenters: 1, l2sp_weight: 0.0}"`` (an override merges into the
   yaml's mapping: ``{}`` changes nothing).

``--moco_run=RUN`` (a finished MoCo training folder) skips stage 1: round 1 clusters with
that run's encoder and starts from it (how ``compare.py`` runs the pipeline on its own MoCo
runs).

``OUT/final`` links to the last stage's training folder: the pipeline's output, chosen
without looking at any trial list, which ``verify.py --pretrain_path=OUT/final`` scores like
any other run. With ``--verification_file`` every training stage scores that list and
``OUT/stages.md`` / ``stages.json`` / ``det.png`` compare them. No speaker label is read
anywhere (the pseudo-label report's NMI against the manifests' ``spk_id`` is a report only).
Stages run through :class:`speechbrain_moco.experiments.runner.StageRunner`
(``OUT/<stage>.done.json``): a finished stage is reused; an interrupted one resumes from its
checkpoint; one whose command, yaml values or earlier stages changed runs again from an
empty folder. Every SpeechBrain run option given (``--device``, ``--precision`` ...) goes to
every stage.
"""

import json
import os
import sys

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
import speechbrain as sb
from speechbrain.utils.logger import get_logger

from speechbrain_moco.cli import check_device, device_argument, user_errors
from speechbrain_moco.dataio import trial_list_path
from speechbrain_moco.experiments.runner import ROOT, StageRunner
from speechbrain_moco.hparams_io import load_yaml
from speechbrain_moco.run_folder import RunStatus
from speechbrain_moco.verification import read_scores
from speechbrain_moco.verification.plots import plot_det

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


def stage_commands(hparams, run_opts):
    """``[(stage, script arguments, earlier stages it starts from)]`` of the pipeline, in
    order; each stage's output folder (``OUT/<stage>``) is added by the runner. With
    ``moco_run`` (a finished MoCo training folder) there is no MoCo stage: round 1 starts
    from that run."""
    out, data, seed = hparams["output_folder"], hparams["data_folder"], hparams["seed"]
    # the SpeechBrain run options given on the command line, forwarded to every stage
    common = [f"--{k}={run_opts[k]}" for k in sorted(run_opts.overridden_args)]
    trials = [f"--verification_file={hparams['verification_file']}"] if hparams["verification_file"] else []
    stages = []
    if hparams["moco_run"]:
        moco, previous_stage = hparams["moco_run"], []
    else:
        moco, previous_stage = os.path.join(out, "moco"), ["moco"]
        stages.append(
            (
                "moco",
                [
                    "recipes/Folder/MoCo/train_moco.py",
                    repo_path(hparams["moco_hparams"]),
                    f"--data_folder={data}",
                    f"--seed={seed}",
                ]
                + trials
                + as_arguments(hparams["moco_overrides"])
                + common,
                [],
            )
        )
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
                    # every training utterance, each round (not the rows a filter kept)
                    f"--train_annotation={moco}/manifests/train.csv",
                    f"--valid_annotation={moco}/manifests/valid.csv",
                    f"--seed={seed}",
                ]
                + as_arguments(hparams["pseudo_label_overrides"])
                + common,
                previous_stage,
            )
        )
        stages.append(
            (
                f"pl{r}",
                [
                    "recipes/Folder/SpeakerRec/train_speaker_embeddings.py",
                    repo_path(hparams["train_hparams"]),
                    f"--data_folder={data}",
                    f"--init_from={previous}",
                    f"--train_annotation={labels}/train.csv",
                    f"--valid_annotation={labels}/valid.csv",
                    f"--seed={seed}",
                ]
                + trials
                + as_arguments(hparams["train_overrides"])
                + common,
                previous_stage + [f"pl{r}_labels"],
            )
        )
        previous, previous_stage = trained, [f"pl{r}"]
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
            {
                "stage": record["stage"],
                "EER": metrics["EER"],
                "EER_ci95": metrics.get("EER_ci95"),
                "minDCF_p0.01": metrics["minDCF_p0.01"],
            }
        )
    for record in records:
        if record["stage"].endswith("_labels"):
            with open(os.path.join(out, record["stage"], "clusters.json"), encoding="utf-8") as f:
                clusters = json.load(f)
            record["n_clusters"] = clusters.get("n_clusters")
    plot_det(
        systems,
        os.path.join(out, "det.png"),
        title=f"DET: label-free stages on {os.path.basename(trials)}",
        intervals={r["stage"]: r["EER_ci95"] for r in rows if r["EER_ci95"]},
    )
    lines = ["| stage | EER % [95 % CI, speakers] | minDCF0.01 |", "| --- | --- | --- |"]
    lines += [
        f"| {r['stage']} | {r['EER']:.2f} [{r['EER_ci95'][0]:.2f}, {r['EER_ci95'][1]:.2f}] | "
        f"{r['minDCF_p0.01']:.3f} |"
        for r in rows
    ]
    with open(os.path.join(out, "stages.md"), "w", encoding="utf-8") as f:
        f.write(f"Label-free stages scored on {trials}\n\n" + "\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    with user_errors("label_free.py"):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        # before SpeechBrain initialises CUDA: a machine without it gets one line
        check_device(device_argument(sys.argv[1:]))
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        hparams = load_yaml(hparams_file, overrides)
        out = os.path.abspath(hparams["output_folder"])
        hparams["output_folder"] = out
        hparams["data_folder"] = os.path.abspath(hparams["data_folder"])
        if not os.path.isdir(hparams["data_folder"]):
            raise FileNotFoundError(f"--data_folder={hparams['data_folder']} is not a folder")
        if hparams["verification_file"]:  # the stages run from the repository root
            hparams["verification_file"] = trial_list_path(
                hparams["verification_file"], hparams["data_folder"]
            )
        if hparams["rounds"] < 0:
            raise ValueError(f"rounds={hparams['rounds']} must be >= 0")
        if hparams["moco_run"]:
            hparams["moco_run"] = os.path.abspath(hparams["moco_run"])
            if not os.path.isfile(os.path.join(hparams["moco_run"], "manifests", "train.csv")):
                raise FileNotFoundError(
                    f"--moco_run={hparams['moco_run']} is not a finished MoCo training folder "
                    "(no manifests/train.csv)"
                )
            if hparams["rounds"] < 1:
                raise ValueError("--moco_run with rounds=0 has nothing to do")
        runner = StageRunner(out, device=None)
        with RunStatus(out):
            records = []
            for name, cmd, after in stage_commands(hparams, run_opts):
                record = runner.run(name, cmd, after=after)
                records.append(dict(record, stage=name))
            final = link_final(out, records[-1]["stage"])
            metrics = (
                compare_stages(out, records, hparams["verification_file"])
                if hparams["verification_file"]
                else None
            )
            summary = {
                "stages": [
                    {k: r[k] for k in ("stage", "seconds", "reused", "resumed", "n_clusters") if k in r}
                    for r in records
                ],
                "final": records[-1]["stage"],
                "moco_run": hparams["moco_run"],
            }
            if metrics is not None:
                summary["metrics"] = metrics
            with open(os.path.join(out, "stages.json"), "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=2)
        line = f"label-free pipeline done: {len(records)} stages, final = {final} -> {records[-1]['stage']}"
        if "metrics" in summary:
            line += "; " + ", ".join(f"{r['stage']} EER {r['EER']:.2f}%" for r in summary["metrics"])
        print(line)
