#!/usr/bin/env python3
"""Recipe for supervised speaker embeddings (AAM-softmax), from scratch or MoCo-initialised.

The pretraining scenario of Ding, He and Wan (2020): the same yaml trains from scratch
or, with ``--init_from``, starts from a MoCo run's query encoder (frozen for the first
``freeze_epochs``, then fine-tuned). With a pseudo-label manifest
(``--train_annotation=PL/train.csv``, written by ``pseudo_labels.py``) no label is used.

To run::

    python recipes/Folder/SpeakerRec/train_speaker_embeddings.py \
        recipes/Folder/SpeakerRec/hparams/train_ecapa.yaml \
        --data_folder=ROOT --output_folder=OUT [--init_from=MOCO_OUT]

The encoder is saved as ``embedding_model``: ``recipes/Folder/MoCo/verify.py
--pretrain_path=OUT`` scores the run like a MoCo run. The VoxCeleb recipe links here.
"""

import os
import sys

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
import speechbrain as sb
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_moco import dataio
from speechbrain_moco.cli import check_device, device_argument, user_errors
from speechbrain_moco.hparams_io import load_yaml
from speechbrain_moco.run_folder import RunStatus, write_run_info
from speechbrain_moco.training import SpeakerBrain, check_init_features, init_schedule, load_encoder_init

logger = get_logger(__name__)


def dataio_prep(hparams, data_root, labels):
    """One random labelled crop per utterance: training (unreadable audio skipped and
    listed in ``skipped_audio.txt``) and validation sets, and their loader options."""
    crops = hparams["crops"]
    manifests = [hparams["train_annotation"], hparams["valid_annotation"]]
    # with audio_cache: crops sliced from one memory-mapped copy of the training audio
    dataio.attach_audio_cache(crops, manifests, data_root, hparams["audio_cache"], hparams["sample_rate"])
    train = dataio.labelled_crop_dataset(hparams["train_annotation"], data_root, crops, labels)
    valid = dataio.validation_manifest(hparams["valid_annotation"])  # None: valid_ratio 0
    if valid is not None:
        unknown = sorted({r["spk_id"] for r in dataio.read_manifest(valid)} - set(labels.lab2ind))
        if unknown:
            raise ValueError(f"{valid}: speakers not in the training manifest: {unknown[:5]}")
        valid = dataio.SkippingDataset(  # a bad file in validation: skipped and named too
            dataio.labelled_crop_dataset(valid, data_root, crops, labels),
            os.path.join(hparams["output_folder"], "skipped_audio.txt"),
        )
    train = dataio.SkippingDataset(train, os.path.join(hparams["output_folder"], "skipped_audio.txt"))
    loaders = {
        "train_loader_kwargs": hparams["train_dataloader_options"],
        "valid_loader_kwargs": hparams["valid_dataloader_options"],
    }
    return train, valid, loaders


def label_encoder(hparams):
    """The speaker labels of the training manifest, saved once in ``save_folder``."""
    path = os.path.join(hparams["save_folder"], "label_encoder.txt")

    def create():
        os.makedirs(hparams["save_folder"], exist_ok=True)
        speakers = sorted({row["spk_id"] for row in dataio.read_manifest(hparams["train_annotation"])})
        CategoricalEncoder().load_or_create(path, from_iterables=[speakers])

    run_on_main(create)
    encoder = CategoricalEncoder()
    encoder.load(path)
    return encoder


if __name__ == "__main__":
    with user_errors(
        "train_speaker_embeddings.py"
    ):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        # before SpeechBrain initialises CUDA: a machine without it gets one line
        check_device(device_argument(sys.argv[1:]))
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        sb.utils.distributed.ddp_init_group(run_opts)  # a no-op unless launched by torchrun
        hparams = load_yaml(hparams_file, overrides)  # a mistyped --key: an error naming the closest
        # bad values fail before any data preparation
        freeze, lr_scale = init_schedule(
            hparams["init_from"], hparams["freeze_epochs"], hparams["encoder_lr_scale"]
        )
        sb.create_experiment_directory(
            experiment_directory=hparams["output_folder"],
            hyperparams_to_save=hparams_file,
            overrides=overrides,
        )
        with RunStatus(hparams["output_folder"]):  # status.json: running / finished / failed
            if freeze and freeze >= hparams["number_of_epochs"]:
                logger.warning(
                    "freeze_epochs (%d) >= number_of_epochs (%d): the initialised encoder is never "
                    "fine-tuned, only the classifier trains (lower --freeze_epochs)",
                    freeze,
                    hparams["number_of_epochs"],
                )

            # Manifests: the prep's own, or pseudo-labelled ones given as --train_annotation
            prepared, trials = dataio.run_preparation(
                hparams["prepare_data"],
                hparams["data_folder"],
                hparams["manifest_folder"],
                dataio.trial_list_path(hparams["verification_file"], hparams["data_folder"]),
            )
            data_root = prepared["data_root"]
            labels = label_encoder(hparams)
            if len(labels.lab2ind) < 2:
                raise ValueError(
                    f"{hparams['train_annotation']}: {len(labels.lab2ind)} speaker(s); "
                    "supervised training needs at least 2"
                )
            classifier = hparams["classifier"](out_neurons=len(labels.lab2ind))
            hparams["modules"]["classifier"] = classifier
            hparams["checkpointer"].add_recoverable("classifier", classifier)

            # Initialisation from a MoCo (or any) run: strict shapes, same feature normalisation
            init, init_path = hparams["init_from"], None
            if init:
                init_path = load_encoder_init(hparams["embedding_model"], init)
                check_init_features(hparams["mean_var_norm"], init, init_path)
            info = dict(init_from=init and os.path.abspath(init), init_checkpoint=init_path, trials=trials)
            info.update(
                n_speakers=len(labels.lab2ind),
                freeze_epochs=freeze,
                encoder_lr_scale=lr_scale,
                seed=hparams.get("seed"),
            )
            manifests = hparams["train_annotation"], hparams["valid_annotation"]
            write_run_info(hparams["output_folder"], data_root, *manifests, **info)

            train_set, valid_set, loaders = dataio_prep(hparams, data_root, labels)
            brain = SpeakerBrain(
                hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"]
            )
            brain.fit(hparams["epoch_counter"], train_set, valid_set, **loaders)

            if if_main_process():  # score the trial list, and say how the run ended
                print(brain.finish(trials, data_root))
