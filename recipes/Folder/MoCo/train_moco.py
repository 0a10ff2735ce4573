#!/usr/bin/env python3
"""Recipe for speaker embeddings learned without labels by Momentum Contrast (MoCo).

Two random crops of one utterance, augmented independently, are a positive pair; the
query encoder is trained with InfoNCE against a momentum (EMA) key encoder and a FIFO
queue of past keys (Ding, He, Wan 2020). No speaker label is read.

To run::

    python recipes/Folder/MoCo/train_moco.py recipes/Folder/MoCo/hparams/moco.yaml \
        [--data_folder=ROOT] [--verification_file=TRIALS] [--output_folder=OUT]

or ``python train_moco.py hparams/moco.yaml`` from this folder. The yaml names the Brain
(``brain_class``): ``MoCoBrain`` for plain MoCo, ``SSPSBrain`` in ``moco_ssps.yaml``. Without
``--data_folder`` the Folder yaml prepares the embedded synthetic corpus. The
VoxCeleb, CN-Celeb and LibriSpeech recipes link to this script: a recipe is its yaml,
which names the corpus preparation (``prepare_data``). Several GPUs:
``torchrun --nproc_per_node=N train_moco.py hparams/moco.yaml ...``.

At the end the trial list (the preparation's, else ``--verification_file``) is scored
with the query encoder: ``<output_folder>/eval/{scores.txt,metrics.json}`` and plots.
"""

import os
import sys

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from data_prep import prep_function
from speechbrain_moco import dataio
from speechbrain_moco.cli import check_device, device_argument, user_errors
from speechbrain_moco.hparams_io import load_yaml
from speechbrain_moco.run_folder import RunStatus, write_run_info

logger = get_logger(__name__)


def extra_source(hparams, index, source):
    """One ``extra_sources`` entry, ``{data_folder, [annotation], [name], [weight], [prep]}``,
    resolved to ``{name, weight, annotation, data_folder}``: without ``annotation`` the
    folder is prepared by ``prep`` (a name of ``data_prep.PREPS``; default: this recipe's
    own ``prepare_data``) and its training manifest is used. No label is read."""
    if "data_folder" not in source:
        raise ValueError(f"extra_sources[{index}] needs a data_folder: {source}")
    name = source.get("name") or f"source{index + 1}"
    resolved = {
        "name": name,
        "weight": float(source.get("weight", 1.0)),
        "data_folder": source["data_folder"],
        "annotation": source.get("annotation"),
    }
    if resolved["annotation"] is None:
        prep = prep_function(source["prep"]) if source.get("prep") else hparams["prepare_data"]
        kwargs = {
            "data_folder": source["data_folder"],
            "verification_file": None,
            "save_folder": os.path.join(hparams["manifest_folder"], name),
        }
        run_on_main(prep, kwargs=kwargs)
        outputs = prep(**kwargs, skip_prep=True)
        resolved.update(annotation=outputs["train"], data_folder=outputs["data_root"])
    return resolved


def dataio_prep(hparams, data_root):
    """Two-view training and validation sets, and their loader options for ``fit``.

    Utterances shorter than ``min_utterance_seconds`` (null: one crop) are left out and
    listed in ``short_utterances.txt``; unreadable training and validation audio is skipped
    and listed in ``skipped_audio.txt``; with ``extra_sources`` every corpus is concatenated and a
    weighted sampler draws it.
    """
    crops = hparams["two_crops"]
    manifests = [hparams["train_annotation"], hparams["valid_annotation"]]
    # with audio_cache: crops sliced from one memory-mapped copy of the training audio
    dataio.attach_audio_cache(crops, manifests, data_root, hparams["audio_cache"], hparams["sample_rate"])
    # shorter than a crop: the two views would share their samples; left out and listed
    min_seconds, out = hparams["min_utterance_seconds"] or hparams["crop_seconds"], hparams["output_folder"]
    sampler = None
    if hparams["extra_sources"]:
        sources = [
            {
                "name": "main",
                "annotation": hparams["train_annotation"],
                "data_folder": data_root,
                "weight": hparams["main_weight"],
            }
        ]
        sources += [extra_source(hparams, i, s) for i, s in enumerate(hparams["extra_sources"])]
        train, sampler = dataio.multi_source_dataset(sources, crops, hparams["seed"], min_seconds, out)
    else:
        train = dataio.two_view_dataset(hparams["train_annotation"], data_root, crops)
        train, _ = dataio.drop_short(train, min_seconds, os.path.join(out, "short_utterances.txt"))
    train = dataio.SkippingDataset(train, os.path.join(out, "skipped_audio.txt"))
    valid = dataio.validation_manifest(hparams["valid_annotation"])  # None: valid_ratio 0
    if valid is not None:
        # a bad file drawn into validation is skipped and named as in training
        valid = dataio.SkippingDataset(
            dataio.two_view_dataset(valid, data_root, crops), os.path.join(out, "skipped_audio.txt")
        )
    loaders = {
        "train_loader_kwargs": dict(hparams["train_dataloader_options"], sampler=sampler),
        "valid_loader_kwargs": hparams["valid_dataloader_options"],
    }
    return train, valid, loaders


if __name__ == "__main__":
    with user_errors("train_moco.py"):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        # before SpeechBrain initialises CUDA: a machine without it gets one line
        check_device(device_argument(sys.argv[1:]))
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        sb.utils.distributed.ddp_init_group(run_opts)  # a no-op unless launched by torchrun
        hparams = load_yaml(hparams_file, overrides)  # a mistyped --key: an error naming the closest
        verification_file = dataio.trial_list_path(hparams["verification_file"], hparams["data_folder"])
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )
        with RunStatus(hparams["output_folder"]):  # status.json: running / finished / failed
            # Manifests (trial speakers left out of training), written by the main process only
            prepared, trials = dataio.run_preparation(
                hparams["prepare_data"], hparams["data_folder"], hparams["manifest_folder"], verification_file
            )
            data_root = prepared["data_root"]
            logger.info("corpus %s, %d epochs, trial list %s", data_root, hparams["number_of_epochs"], trials)
            manifests = hparams["train_annotation"], hparams["valid_annotation"]
            write_run_info(hparams["output_folder"], data_root, *manifests, trials=trials)

            train_set, valid_set, loaders = dataio_prep(hparams, data_root)
            # MoCoBrain, or a method variant's subclass (moco_ssps.yaml: SSPSBrain)
            brain = hparams["brain_class"](
                hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
            )
            brain.fit(hparams["epoch_counter"], train_set, valid_set, **loaders)

            if if_main_process():  # score the trial list, and say how the run ended
                print(brain.finish(trials, data_root))
