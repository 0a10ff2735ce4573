"""The recipes' commands as stages of a :class:`~speechbrain_moco.experiments.runner.StageRunner`:
MoCo, supervised AAM (true or pseudo labels), pseudo-labels,
the label-free pipeline, and the scoring of a trial list with ``verify.py``.

Every stage is the command line a user would type, run from the repository root (the
recipes live in the checkout: these helpers need one, as ``compare.py`` and the
benchmarks do).
"""

import json
import os

FOLDER_MOCO = "recipes/Folder/MoCo"
FOLDER_SUP = "recipes/Folder/SpeakerRec"


def moco_stage(runner, name, data_folder, trials, yaml="moco.yaml", extra=(), after=()):
    """MoCo training (no labels) on the speakers ``trials`` does not name."""
    args = [
        f"{FOLDER_MOCO}/train_moco.py",
        f"{FOLDER_MOCO}/hparams/{yaml}",
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
    ] + list(extra)
    return runner.run(name, args, after=after)


def supervised_stage(
    runner, name, data_folder, trials, yaml="train_ecapa.yaml", init_from=None, labels=None, extra=()
):
    """AAM-softmax training on true labels, or on the pseudo-label stage ``labels``;
    initialised from the training stage ``init_from`` when given."""
    args = [
        f"{FOLDER_SUP}/train_speaker_embeddings.py",
        f"{FOLDER_SUP}/hparams/{yaml}",
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
    ]
    after = []
    if init_from is not None:
        args.append(f"--init_from={runner.out(init_from)}")
        after.append(init_from)
    if labels is not None:
        args += [
            f"--train_annotation={runner.out(labels)}/train.csv",
            f"--valid_annotation={runner.out(labels)}/valid.csv",
        ]
        after.append(labels)
    return runner.run(name, args + list(extra), after=after)


def label_free_stage(runner, name, data_folder, trials, moco=None, seed=None, extra=()):
    """The label-free pipeline (``label_free.py`` with its yaml) as one stage; with ``moco``
    (a MoCo training stage) it starts from that run instead of training its own."""
    args = [
        f"{FOLDER_SUP}/label_free.py",
        f"{FOLDER_SUP}/hparams/label_free.yaml",
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
    ]
    if moco is not None:
        args.append(f"--moco_run={runner.out(moco)}")
    if seed is not None:
        args.append(f"--seed={seed}")
    return runner.run(name, args + list(extra), after=[moco] if moco else [])


def score_stage(runner, name, run_stage, trials, data_folder, yaml="verification_cosine.yaml", extra=()):
    """Score ``trials`` with the encoder of training stage ``run_stage`` (``verify.py``);
    returns its ``metrics.json``. Reused while the training stage, the command, the yaml
    and the trial list are unchanged. ``run_stage`` may also be a ``(stage, subfolder)``
    pair: the subfolder of a stage (the label-free pipeline's ``final``)."""
    stage, sub = (run_stage, None) if isinstance(run_stage, str) else run_stage
    run_folder = runner.out(stage) if sub is None else os.path.join(runner.out(stage), sub)
    args = [
        f"{FOLDER_MOCO}/verify.py",
        f"{FOLDER_MOCO}/hparams/{yaml}",
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
        f"--pretrain_path={run_folder}",
    ] + list(extra)
    runner.run(name, args, after=[stage], inputs=[trials])
    with open(os.path.join(runner.out(name), "metrics.json"), encoding="utf-8") as f:
        return json.load(f)
