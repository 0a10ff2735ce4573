"""Supervised speaker-embedding training (AAM-softmax) and MoCo initialisation.

The pretraining scenario of Ding, He and Wan (2020): the MoCo query encoder
initialises supervised training (``--init_from``), which is otherwise identical
to training from scratch. The same trainer learns from pseudo-labels
(``speechbrain_moco.pseudo_labels``) for label-free refinement.

``SpeakerBrain`` shares the training loop of ``MoCoBrain`` (``EmbeddingBrain``):
Fbank front-end, per-row augmentation, warm-up + cosine lr, non-finite skip,
``history.jsonl``, atomic checkpoints. The encoder is saved as
``embedding_model``, so ``verify.py --pretrain_path=OUT`` scores a supervised
run exactly like a MoCo run.

Modules expected: ``compute_features``, ``mean_var_norm``, ``embedding_model``,
``classifier`` (built by ``run_supervised`` once the number of speakers is known).
"""

import json
import os
import sys

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio import attach_audio_cache, labelled_crop_dataset, manifest_durations
from speechbrain_moco.distributed import world_size
from speechbrain_moco.encoder import embed
from speechbrain_moco.export import resolved_yaml_tree
from speechbrain_moco.manifest import read_manifest
from speechbrain_moco.sources import SkippingDataset
from speechbrain_moco.startup import check_crops
from speechbrain_moco.trainer import EmbeddingBrain

logger = get_logger(__name__)


def init_schedule(hparams):
    """``(freeze_epochs, encoder_lr_scale)`` of a run: the hparams' values when it
    is initialised (``init_from``), ``(0, 1.0)`` for a scratch run (a random
    encoder has nothing to preserve). Out-of-range values raise.
    """
    get = hparams.get if isinstance(hparams, dict) else lambda k, d=None: getattr(hparams, k, d)
    if not get("init_from", None):
        return 0, 1.0
    freeze, scale = get("freeze_epochs", 0), float(get("encoder_lr_scale", 1.0))
    if isinstance(freeze, bool) or int(freeze) != freeze or freeze < 0:
        raise ValueError(f"freeze_epochs must be a whole number >= 0, got {freeze!r}")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"encoder_lr_scale must be in (0, 1], got {scale}")
    return int(freeze), scale


class SpeakerBrain(EmbeddingBrain):
    """AAM-softmax speaker classification on one random crop per utterance.

    With ``init_from`` and ``freeze_epochs: N`` the encoder is frozen (no
    gradient, batch-norm in eval mode) for the first N epochs, so only the
    classifier learns before the pretrained encoder is fine-tuned (linear
    probing then fine-tuning: a random classifier's first gradients would
    otherwise wash out the initialisation). ``encoder_lr_scale`` (initialised
    runs only) multiplies the encoder's learning rate throughout, the classifier
    keeping the full schedule (discriminative fine-tuning).
    """

    def embedding_dim(self):
        return self.hparams.emb_dim

    def epoch_crops(self):
        return self.hparams.crops

    def encoder_lr_scale(self):
        """The encoder's learning-rate factor (see :func:`init_schedule`)."""
        return init_schedule(self.hparams)[1]

    def param_groups(self):
        """The encoder at ``encoder_lr_scale`` x the schedule, the rest at 1 x."""
        groups, scale = super().param_groups(), self.encoder_lr_scale()
        if scale == 1.0:
            return groups
        (trainable,) = [g["params"] for g in groups]
        encoder = {id(p) for p in self.modules.embedding_model.parameters()}
        return [{"params": [p for p in trainable if id(p) in encoder], "lr_scale": scale},
                {"params": [p for p in trainable if id(p) not in encoder], "lr_scale": 1.0}]

    def frozen(self, stage):
        """True while the encoder is frozen: the first ``freeze_epochs`` training
        epochs of a run initialised with ``init_from`` (a random encoder has
        nothing to preserve, so scratch runs never freeze)."""
        if stage != sb.Stage.TRAIN:
            return False
        return self.hparams.epoch_counter.current <= init_schedule(self.hparams)[0]

    def compute_forward(self, batch, stage):
        """Return ``(cosine logits (B, 1, C), embeddings (B, D))``."""
        batch = batch.to(self.device)
        wavs, lengths = batch.sig
        if stage == sb.Stage.TRAIN:
            wavs = self.augment(wavs, lengths)
        feats = self.features(wavs, lengths, stage)
        if self.frozen(stage):
            self.modules.embedding_model.eval()
            with torch.no_grad():
                emb = embed(self.modules.embedding_model, feats, lengths)
        else:
            emb = embed(self.modules.embedding_model, feats, lengths)
        return self.modules.classifier(emb.unsqueeze(1)), emb

    def compute_objectives(self, predictions, batch, stage):
        """AAM-softmax loss; accumulates the classification accuracy."""
        logits, _ = predictions
        spk, _ = batch.spk_id_encoded
        loss = self.hparams.compute_cost(logits, spk)
        hits = (logits.detach().squeeze(1).argmax(dim=-1) == spk.squeeze(1)).float()
        self.acc_sum += float(hits.sum())
        self.acc_count += hits.numel()
        return loss

    def epoch_meta(self):
        return {"encoder_frozen": self.frozen(sb.Stage.TRAIN)}

    def fit(self, epoch_counter, train_set, valid_set=None, progressbar=None,
            train_loader_kwargs={}, valid_loader_kwargs={}):
        """Check the crops and the batch against the data, then SpeechBrain's fit."""
        train_loader_kwargs = dict(train_loader_kwargs, collate_fn=train_loader_kwargs.get(
            "collate_fn", sb.dataio.batch.PaddedBatch))
        if not isinstance(train_set, torch.utils.data.DataLoader):
            crops = self.hparams.crops
            check_crops(manifest_durations(train_set), crops.crop / crops.sample_rate)
            batch = train_loader_kwargs.get("batch_size", 1)
            if len(train_set) < batch * world_size():
                raise ValueError(f"the training set has {len(train_set)} utterances, fewer than one "
                                 f"global batch ({batch} x {world_size()}): lower --batch_size")
            train_set = self.make_dataloader(train_set, stage=sb.Stage.TRAIN, **train_loader_kwargs)
        self.steps_per_epoch = len(train_set)
        self.valid_expected = valid_set is not None
        super().fit(epoch_counter, train_set, valid_set, progressbar,
                    train_loader_kwargs, valid_loader_kwargs)


# ----------------------------------------------------------------- init_from
def init_checkpoint_path(init_from):
    """The ``embedding_model.ckpt`` that ``--init_from`` names.

    Accepts a training ``--output_folder`` (MoCo or supervised: the latest
    checkpoint of ``save/``, the one ``verify.py`` loads), an exported model
    folder (``speechbrain_moco.export``), a ``CKPT+*`` folder, or the ``.ckpt``
    file itself.
    """
    if os.path.isfile(init_from):
        return init_from
    if not os.path.isdir(init_from):
        raise FileNotFoundError(f"--init_from={init_from}: no such file or folder")
    direct = os.path.join(init_from, "embedding_model.ckpt")
    if os.path.isfile(direct):
        return direct
    save = os.path.join(init_from, "save")
    if os.path.isdir(save):
        ckpt = sb.utils.checkpoints.Checkpointer(save).find_checkpoint()
        if ckpt is not None and os.path.isfile(os.path.join(ckpt.path, "embedding_model.ckpt")):
            return os.path.join(ckpt.path, "embedding_model.ckpt")
    raise FileNotFoundError(f"--init_from={init_from}: no embedding_model.ckpt in it nor in a "
                            "checkpoint of its save/ folder (is it a training --output_folder?)")


def state_dict_mismatches(expected, found):
    """Human-readable differences between two state dicts (keys and shapes)."""
    problems = [f"missing {k} {tuple(v.shape)}" for k, v in expected.items() if k not in found]
    problems += [f"unexpected {k} {tuple(v.shape)}" for k, v in found.items() if k not in expected]
    problems += [f"{k}: checkpoint {tuple(found[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in found and found[k].shape != v.shape]
    return problems


def load_encoder_init(encoder, init_from):
    """Load the (MoCo query) encoder weights ``init_from`` names into ``encoder``.

    Strict: every parameter and buffer must exist with the same shape, else a
    ``ValueError`` lists the differences. Returns the checkpoint file loaded.
    """
    path = init_checkpoint_path(init_from)
    state = torch.load(path, map_location="cpu", weights_only=True)
    problems = state_dict_mismatches(encoder.state_dict(), state)
    if problems:
        shown = "; ".join(problems[:6]) + (f"; ... ({len(problems)} in all)" if len(problems) > 6 else "")
        raise ValueError(f"--init_from={init_from}: {path} does not fit the embedding_model this yaml "
                         f"builds (same architecture, channels, emb_dim and n_mels needed): {shown}")
    encoder.load_state_dict(state, strict=True)
    logger.info("embedding_model initialised from %s", path)
    return path


def trained_feature_norm(init_from, ckpt_path):
    """``(norm_type, std_norm, yaml)`` of the run or model folder ``init_from`` came from.

    Read from its ``hyperparams.yaml`` (the training run's, or an exported
    model's); ``None`` when there is none (a bare ``.ckpt`` file) or it
    builds no ``mean_var_norm``.
    """
    run = os.path.dirname(os.path.dirname(os.path.dirname(ckpt_path)))  # <run>/save/CKPT+x/file
    for folder in (init_from, os.path.dirname(ckpt_path), run):
        path = os.path.join(folder, "hyperparams.yaml")
        if os.path.isdir(folder) and os.path.isfile(path):
            node = resolved_yaml_tree(path)[1].get("mean_var_norm")
            if not isinstance(node, dict):
                return None
            # InputNormalization's own defaults where the yaml leaves them out
            return node.get("norm_type", "global"), bool(node.get("std_norm", True)), path
    return None


def check_init_features(norm, init_from, ckpt_path):
    """Refuse an init whose encoder was trained on differently normalised features.

    With ``feature_norm: global`` the init run's corpus statistics
    (``mean_var_norm.ckpt`` beside the weights) are loaded too, so the encoder
    starts on exactly the features it learned from. Returns what was loaded.
    """
    found = trained_feature_norm(init_from, ckpt_path)
    if found is None:
        logger.warning("--init_from=%s: no hyperparams.yaml found; cannot check that it was trained "
                       "with feature_norm=%s", init_from, norm.norm_type)
    elif (found[0], found[1]) != (norm.norm_type, bool(norm.std_norm)):
        raise ValueError(
            f"--init_from={init_from} was trained with feature_norm={found[0]}, feature_std_norm="
            f"{found[1]} ({found[2]}); this run uses feature_norm={norm.norm_type}, feature_std_norm="
            f"{bool(norm.std_norm)}: the encoder would see other features. Pass "
            f"--feature_norm={found[0]} --feature_std_norm={found[1]}")
    stats = os.path.join(os.path.dirname(ckpt_path), "mean_var_norm.ckpt")
    if norm.norm_type == "global" and os.path.isfile(stats):
        norm._load(stats)
        logger.info("mean_var_norm statistics initialised from %s", stats)
        return stats
    return None


# ---------------------------------------------------------------------- data
def label_encoder_for(hparams):
    """Speaker-label encoder of the training manifest, saved once in ``save_folder``."""
    path = os.path.join(hparams["save_folder"], "label_encoder.txt")

    def create():
        os.makedirs(hparams["save_folder"], exist_ok=True)
        speakers = sorted({row["spk_id"] for row in read_manifest(hparams["train_annotation"])})
        CategoricalEncoder().load_or_create(path, from_iterables=[speakers])

    run_on_main(create)
    encoder = CategoricalEncoder()
    encoder.load(path)
    return encoder


def supervised_dataio_prep(hparams, label_encoder):
    """Training (skipping unreadable audio) and validation sets of labelled crops."""
    report = os.path.join(hparams["output_folder"], "skipped_audio.txt")
    attach_audio_cache(hparams, hparams["crops"])
    train = labelled_crop_dataset(hparams["train_annotation"], hparams["data_folder"],
                                  hparams["crops"], label_encoder)
    valid = hparams["valid_annotation"]
    if valid is not None:
        rows = read_manifest(valid)
        unknown = sorted({r["spk_id"] for r in rows} - set(label_encoder.lab2ind))
        if unknown:
            raise ValueError(f"{valid}: speakers not in the training manifest: {unknown[:5]}")
        valid = labelled_crop_dataset(valid, hparams["data_folder"], hparams["crops"], label_encoder)
    return SkippingDataset(train, report), valid


# -------------------------------------------------------------------- recipe
def run_supervised(argv=None):
    """``python train_speaker_embeddings.py hparams/train_ecapa.yaml --data_folder=ROOT
    --output_folder=OUT [--init_from=MOCO_OUT]``.

    Returns ``(brain, metrics, baseline)`` as ``recipe.run_moco``.
    """
    from speechbrain_moco.recipe import evaluate_run, load_hparams, prepare_experiment

    argv = sys.argv[1:] if argv is None else argv
    hparams_file, run_opts, overrides, hparams = load_hparams(argv)
    freeze_epochs, encoder_lr_scale = init_schedule(hparams)  # bad values fail before data preparation
    trials = prepare_experiment(hparams, hparams_file, overrides)
    if freeze_epochs and freeze_epochs >= hparams["number_of_epochs"]:
        logger.warning("freeze_epochs (%d) >= number_of_epochs (%d): the initialised encoder is never "
                       "fine-tuned, only the classifier trains (lower --freeze_epochs)",
                       freeze_epochs, hparams["number_of_epochs"])
    if hparams.get("extra_sources"):
        raise ValueError("extra_sources are unlabelled: the supervised recipe trains on "
                         "train_annotation only (use pseudo_labels.py to label them)")
    labels = label_encoder_for(hparams)
    n_speakers = len(labels.lab2ind)
    if n_speakers < 2:
        raise ValueError(f"{hparams['train_annotation']}: {n_speakers} speaker(s); "
                         "supervised training needs at least 2")
    classifier = hparams["classifier"](out_neurons=n_speakers)
    hparams["modules"]["classifier"] = classifier
    hparams["checkpointer"].add_recoverable("classifier", classifier)
    init = hparams.get("init_from")
    init_path = load_encoder_init(hparams["embedding_model"], init) if init else None
    if init:
        check_init_features(hparams["mean_var_norm"], init, init_path)
    if if_main_process():
        info_path = os.path.join(hparams["output_folder"], "run_info.json")
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        info.update(init_from=init and os.path.abspath(init), init_checkpoint=init_path,
                    n_speakers=n_speakers,
                    freeze_epochs=freeze_epochs, encoder_lr_scale=encoder_lr_scale,
                    valid_annotation=hparams["valid_annotation"] and os.path.abspath(
                        hparams["valid_annotation"]))
        with open(info_path, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
    train_set, valid_set = supervised_dataio_prep(hparams, labels)
    brain = SpeakerBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                         run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.fit(brain.hparams.epoch_counter, train_set, valid_set,
              train_loader_kwargs=hparams["train_dataloader_options"],
              valid_loader_kwargs=hparams["valid_dataloader_options"])
    if trials is None or not if_main_process():
        return brain, None, None
    metrics, baseline = evaluate_run(brain, hparams, trials)
    return brain, metrics, baseline
