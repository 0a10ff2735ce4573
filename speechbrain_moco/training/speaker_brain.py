"""Supervised speaker-embedding training (AAM-softmax), from scratch or MoCo-initialised.

The pretraining scenario of Ding, He and Wan (2020): the MoCo query encoder
initialises supervised training (``init_from``, see
:mod:`speechbrain_moco.training.init_from`), which is otherwise identical to
training from scratch. The same trainer learns from pseudo-labels
(:mod:`speechbrain_moco.pseudo_labels`) for label-free refinement.

``SpeakerBrain`` shares the training loop of ``MoCoBrain`` (``EmbeddingBrain``):
Fbank front-end, per-row augmentation, warm-up + cosine lr, non-finite skip,
``history.jsonl``, atomic checkpoints. The encoder is saved as
``embedding_model``, so ``verify.py --pretrain_path=OUT`` scores a supervised
run exactly like a MoCo run.

Modules expected: ``compute_features``, ``mean_var_norm``, ``embedding_model``,
``classifier`` (built by the recipe once the number of speakers is known).
"""

import speechbrain as sb
import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.encoder import embed
from speechbrain_moco.training.embedding_brain import EmbeddingBrain

logger = get_logger(__name__)


def init_schedule(init_from, freeze_epochs, encoder_lr_scale):
    """``(freeze_epochs, encoder_lr_scale)`` of a run: the given values when it is
    initialised (``init_from``), ``(0, 1.0)`` for a scratch run (a random encoder has
    nothing to preserve). Out-of-range values raise.

    Example
    -------
    >>> init_schedule(None, 3, 0.5), init_schedule("runs/moco", 3, 0.5)
    ((0, 1.0), (3, 0.5))
    """
    if not init_from:
        return 0, 1.0
    scale = float(encoder_lr_scale)
    if isinstance(freeze_epochs, bool) or int(freeze_epochs) != freeze_epochs or freeze_epochs < 0:
        raise ValueError(f"freeze_epochs must be a whole number >= 0, got {freeze_epochs!r}")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"encoder_lr_scale must be in (0, 1], got {scale}")
    return int(freeze_epochs), scale


class SpeakerBrain(EmbeddingBrain):
    """AAM-softmax speaker classification on one random crop per utterance.

    With ``init_from`` and ``freeze_epochs: N`` the encoder is frozen (no
    gradient, batch-norm in eval mode) for the first N epochs, so only the
    classifier learns before the pretrained encoder is fine-tuned (linear
    probing then fine-tuning: a random classifier's first gradients would
    otherwise wash out the initialisation). When it thaws, the encoder's learning
    rate is warmed up again from zero over ``rewarm_epochs`` (its optimiser state is
    fresh, and the schedule is near its peak: full steps would undo what the freeze
    kept). ``encoder_lr_scale`` (initialised runs only) multiplies the encoder's
    learning rate throughout, the classifier keeping the full schedule
    (discriminative fine-tuning).
    """

    def embedding_dim(self):
        return self.hparams.emb_dim

    def epoch_crops(self):
        return self.hparams.crops

    def init_schedule(self):
        """``(freeze_epochs, encoder_lr_scale)`` of this run (see :func:`init_schedule`)."""
        hp = self.hparams
        return init_schedule(hp.init_from, hp.freeze_epochs, hp.encoder_lr_scale)

    def param_groups(self):
        """An initialised run: the encoder (at ``encoder_lr_scale`` x the schedule, re-warmed
        after the freeze) and the rest; a scratch run: one group."""
        groups = super().param_groups()
        if not self.hparams.init_from:
            return groups
        (trainable,) = [g["params"] for g in groups]
        encoder = {id(p) for p in self.modules.embedding_model.parameters()}
        return [
            {
                "params": [p for p in trainable if id(p) in encoder],
                "lr_scale": self.init_schedule()[1],
                "encoder": True,
            },
            {"params": [p for p in trainable if id(p) not in encoder], "lr_scale": 1.0},
        ]

    def lr_factor(self, group):
        """``lr_scale``, and for the encoder of an initialised run a linear re-warm-up from
        0 to 1 over the ``rewarm_epochs`` after the freeze (a function of the optimiser step)."""
        factor = super().lr_factor(group)
        rewarm = self.hparams.rewarm_epochs * self.epoch_steps()
        if group.get("encoder") and rewarm > 0:
            since = self.optimizer_step - self.init_schedule()[0] * self.epoch_steps()
            factor *= min(max((since + 1) / rewarm, 0.0), 1.0)
        return factor

    def frozen(self, stage):
        """True while the encoder is frozen: the first ``freeze_epochs`` training
        epochs of a run initialised with ``init_from`` (a random encoder has
        nothing to preserve, so scratch runs never freeze)."""
        if stage != sb.Stage.TRAIN:
            return False
        return self.hparams.epoch_counter.current <= self.init_schedule()[0]

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
