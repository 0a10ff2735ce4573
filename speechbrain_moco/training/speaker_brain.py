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

import math

import numpy as np
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


def set_margin(loss_fn, margin):
    """Set the margin of SpeechBrain's ``AdditiveAngularMargin`` (and its derived constants)."""
    if getattr(loss_fn, "margin", None) == margin:
        return
    loss_fn.margin = margin
    if hasattr(loss_fn, "cos_m"):
        loss_fn.cos_m, loss_fn.sin_m = math.cos(margin), math.sin(margin)
        loss_fn.th, loss_fn.mm = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin


def aam_losses(loss_fn, logits, targets):
    """Per-sample cross-entropy (B,) of margin-adjusted ``logits`` (B, 1, C) for ``targets``
    (B, 1), as SpeechBrain's ``LogSoftmaxWrapper`` averages them.

    Example
    -------
    >>> from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
    >>> wrapper = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    >>> logits, spk = torch.rand(4, 1, 3) * 2 - 1, torch.tensor([[0], [1], [2], [0]])
    >>> bool(torch.isclose(aam_losses(wrapper.loss_fn, logits, spk).mean(), wrapper(logits, spk)))
    True
    """
    outputs, targets = logits.squeeze(1), targets.squeeze(1).long()
    one_hot = torch.nn.functional.one_hot(targets, outputs.shape[1]).float()
    log_probs = torch.nn.functional.log_softmax(loss_fn(outputs, one_hot), dim=1)
    return -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)


class GateThreshold(torch.nn.Module):
    """The loss gate of ``loss_gate: auto``, checkpointed with the run (NaN: none yet)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("value", torch.tensor(float("nan"), dtype=torch.float64))


def gmm_gate(losses):
    """Dynamic loss gate (wavlm_ssl_sv's ``LGL_threshold_update_gmm``): a two-component
    Gaussian mixture of the log losses of an epoch; the threshold is where the two weighted
    densities meet between their means (clean samples below it). ``inf`` (no gate) when the
    losses do not split in two, or when the high-loss mode holds half the samples or more
    (gating most of the data leaves too little, and label correction would then train the
    model on its own guesses).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> losses = np.exp(np.concatenate([rng.normal(0, 0.3, 900), rng.normal(2.5, 0.3, 100)]))
    >>> 0.9 < float(np.log(gmm_gate(losses))) < 1.9
    True
    """
    from sklearn.mixture import GaussianMixture

    x = np.log(np.clip(np.asarray(losses, dtype=np.float64), 1e-8, None)).reshape(-1, 1)
    if x.shape[0] < 10 or float(x.std()) < 1e-6:
        return float("inf")
    gmm = GaussianMixture(2, random_state=0).fit(x)
    if float(gmm.weights_[int(np.argmax(gmm.means_.ravel()))]) >= 0.5:
        return float("inf")  # the high-loss mode holds most samples: not a minority of noisy labels
    means = np.sort(gmm.means_.ravel())
    grid = np.linspace(means[0], means[1], 1001).reshape(-1, 1)
    low = int(np.argmin(gmm.means_.ravel()))
    post = gmm.predict_proba(grid)[:, low]
    crossing = np.flatnonzero(post < 0.5)
    if crossing.size == 0 or means[1] - means[0] < 1e-3:
        return float("inf")
    return float(np.exp(grid[crossing[0], 0]))


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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate_threshold = None
        if self.auto_gate():
            self.gate_threshold = GateThreshold()
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("loss_gate", self.gate_threshold)
        self.epoch_losses = []

    def auto_gate(self):
        """True with ``loss_gate: auto`` (the threshold fitted on each epoch's losses)."""
        return str(self.hparams.loss_gate).lower() == "auto"

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
        # after a freeze only: from the first step, the schedule's own warm-up does it
        if group.get("encoder") and rewarm > 0 and self.init_schedule()[0] > 0:
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
        """AAM-softmax loss (margin warmed up over ``margin_warmup_epochs``; from
        ``loss_gate_epoch`` on, training samples whose loss exceeds ``loss_gate`` are left
        out: loss-gated learning for noisy pseudo-labels); accumulates the accuracy."""
        logits, _ = predictions
        spk, _ = batch.spk_id_encoded
        if stage == sb.Stage.TRAIN:
            set_margin(self.hparams.compute_cost.loss_fn, self.current_margin())
        else:
            set_margin(self.hparams.compute_cost.loss_fn, self.hparams.margin)
        gate = self.hparams.loss_gate
        if self.auto_gate():
            if stage == sb.Stage.TRAIN:  # this epoch's losses fit the next epoch's gate
                each = aam_losses(self.hparams.compute_cost.loss_fn, logits.detach(), spk)
                self.epoch_losses.append(each.cpu().numpy())
            gate = float(self.gate_threshold.value)
            gate = None if math.isnan(gate) else gate
        if (
            stage == sb.Stage.TRAIN
            and gate is not None
            and self.hparams.epoch_counter.current >= self.hparams.loss_gate_epoch
        ):
            loss = self.gated_loss(logits, spk, float(gate))
        else:
            loss = self.hparams.compute_cost(logits, spk)
        if stage == sb.Stage.TRAIN:
            loss = loss + self.l2sp_penalty(loss)
        hits = (logits.detach().squeeze(1).argmax(dim=-1) == spk.squeeze(1)).float()
        self.acc_sum += float(hits.sum())
        self.acc_count += hits.numel()
        return loss

    def gated_loss(self, logits, spk, gate):
        """Mean AAM loss of the samples at or under ``gate``; with ``loss_gate_relabel``, a
        sample over it whose most likely class (softmax of the scaled cosines, no margin) has
        at least that probability trains on that class instead."""
        loss_fn = self.hparams.compute_cost.loss_fn
        per_sample = aam_losses(loss_fn, logits, spk)
        kept = per_sample.detach() <= gate
        total = per_sample * kept
        used = kept
        relabel = self.hparams.loss_gate_relabel
        if relabel is not None:
            with torch.no_grad():
                probs = torch.softmax(self.hparams.scale * logits.squeeze(1), dim=1)
                confidence, guess = probs.max(dim=1)
            fixed = ~kept & (confidence >= relabel)
            if bool(fixed.any()):
                total = total + aam_losses(loss_fn, logits, guess.unsqueeze(1)) * fixed
                used = kept | fixed
            self.gate_relabelled += int(fixed.sum())
        self.gate_kept += int(kept.sum())
        self.gate_seen += kept.numel()
        # a batch with nothing used contributes nothing (a zero with a graph)
        return total.sum() / used.sum().clamp(min=1)

    def l2sp_penalty(self, loss):
        """L2-SP as wavlm_ssl_sv weighs it: ``l2sp_weight x loss x d / d`` (the second ``loss``
        and ``d`` without gradient), ``d`` the squared distance of the encoder's weights to the
        ones it was initialised with. Its gradient is ``l2sp_weight`` x the loss's scale along
        the pull towards the start, whatever the size of the encoder (wavlm_ssl_sv normalises
        both terms the same way); 0 for a scratch run, a zero weight or a frozen encoder."""
        weight = self.hparams.l2sp_weight
        if not weight or not self.hparams.init_from or not getattr(self, "l2sp_start", None):
            return 0.0
        if self.frozen(sb.Stage.TRAIN):  # no gradient may reach a frozen encoder
            return 0.0
        params = [p for p in self.modules.embedding_model.parameters() if p.requires_grad]
        distance = sum(((p - p0) ** 2).sum() for p, p0 in zip(params, self.l2sp_start))
        return weight * loss.detach() * distance / (distance.detach() + 1e-5)

    def on_fit_start(self):
        """The initial encoder weights (L2-SP's anchor: taken before a checkpoint is
        recovered, so a resumed run keeps the initialisation's), then the shared start."""
        if self.hparams.l2sp_weight and self.hparams.init_from:
            params = [p for p in self.modules.embedding_model.parameters() if p.requires_grad]
            self.l2sp_start = [p.detach().clone() for p in params]
        super().on_fit_start()

    def current_margin(self):
        """The AAM margin of this step: linear from 0 to ``margin`` over the first
        ``margin_warmup_epochs`` (a function of the optimiser step)."""
        warm = self.hparams.margin_warmup_epochs * self.epoch_steps()
        if warm <= 0:
            return self.hparams.margin
        return self.hparams.margin * min(1.0, (self.optimizer_step + 1) / warm)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """With ``loss_gate: auto``, the gate of the next epochs from this epoch's losses
        (before the end-of-epoch checkpoint keeps it), then the shared end of a stage."""
        if stage == sb.Stage.TRAIN and self.auto_gate() and self.epoch_losses:
            gate = gmm_gate(np.concatenate(self.epoch_losses))
            self.gate_threshold.value.fill_(gate)
            logger.info("epoch %s: loss gate %.3f (two-component GMM of the log losses)", epoch, gate)
        super().on_stage_end(stage, stage_loss, epoch)

    def on_stage_start(self, stage, epoch=None):
        """Reset the loss-gate counters, then the shared start of a stage."""
        super().on_stage_start(stage, epoch)
        self.epoch_losses = []
        if stage == sb.Stage.TRAIN:  # kept through validation, for the epoch's history row
            self.gate_kept, self.gate_seen, self.gate_relabelled = 0, 0, 0

    def epoch_meta(self):
        meta = {"encoder_frozen": self.frozen(sb.Stage.TRAIN), "margin": round(self.current_margin(), 4)}
        if self.gate_threshold is not None and not math.isnan(float(self.gate_threshold.value)):
            meta["loss_gate"] = round(float(self.gate_threshold.value), 4)
        if getattr(self, "gate_seen", 0):
            meta["loss_gate_kept"] = round(self.gate_kept / self.gate_seen, 4)
            if self.hparams.loss_gate_relabel is not None:
                meta["loss_gate_relabelled"] = round(self.gate_relabelled / self.gate_seen, 4)
        return meta
