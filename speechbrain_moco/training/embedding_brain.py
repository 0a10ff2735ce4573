"""``EmbeddingBrain``: what ``MoCoBrain`` and ``SpeakerBrain`` share.

The feature front-end, per-row reproducible augmentation, warm-up + cosine learning
rate per step, non-finite-loss skipping, start-up checks, one ``fit``, ``history.jsonl``,
atomic end-of-epoch checkpoints and the end-of-recipe ``score_trials``. Subclasses
implement ``compute_forward``, ``compute_objectives``, ``embedding_dim`` and
``epoch_crops``, and may extend ``check_setup``. Every hyperparameter it reads is a key
of each recipe yaml (``null`` / ``False`` defaults).
"""

import os
import zlib

import speechbrain as sb
import torch

from speechbrain_moco.dataio.datasets import manifest_durations
from speechbrain_moco.dataio.sources import count_skipped
from speechbrain_moco.moco.distributed import all_ranks_finite, average_gradients, world_size, wrap_ddp
from speechbrain_moco.run_folder import append_history
from speechbrain_moco.training.checkpoint import RNGState
from speechbrain_moco.training.checks import check_batch, check_crops, check_encoder, is_architecture_mismatch
from speechbrain_moco.training.schedule import warmup_cosine
from speechbrain_moco.training.scoring import ScoringMixin
from speechbrain_moco.training.state import ModuleState
from speechbrain_moco.training.steps import SafeStepMixin


def padded_batch_default(loader_kwargs):
    """A copy of ``loader_kwargs`` whose ``collate_fn`` defaults to ``PaddedBatch``."""
    loader_kwargs = dict(loader_kwargs or {})
    loader_kwargs.setdefault("collate_fn", sb.dataio.batch.PaddedBatch)
    return loader_kwargs


class EmbeddingBrain(ScoringMixin, SafeStepMixin, sb.core.Brain):
    """Shared training loop of the embedding trainers (see module docstring)."""

    # modules left out of the batch-norm rollback of a skipped step (a subclass names its own)
    step_state_exclude = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.optimizer_step_limit is not None:  # SpeechBrain 1.1.2 leaves the CLI value a str
            self.optimizer_step_limit = int(self.optimizer_step_limit)
        self.steps_per_epoch = None
        self.skipped_steps = 0  # non-finite losses skipped, in total
        self.nonfinite_in_a_row = 0
        self.acc_sum, self.acc_count = 0.0, 0
        self.valid_expected = False  # set by fit: checkpoint after validation, not training
        self.sampler = None  # a custom training sampler (several sources), whose epoch is set here
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("rng", RNGState())

    # ------------------------------------------------------------ to implement
    def embedding_dim(self):
        """Size the encoder must output (checked at start-up)."""
        raise NotImplementedError

    def epoch_crops(self):
        """The crop generator (``TwoCrops``) whose epoch selects the crops."""
        raise NotImplementedError

    def epoch_meta(self):
        """Extra per-epoch fields for the log and ``history.jsonl``."""
        return {}

    # ------------------------------------------------------------------ forward
    def features(self, wavs, lengths, stage):
        """Fbank + mean/var normalisation (+ SpecAugment in training).

        A ``global`` normalisation updates its running statistics whenever its
        module is in training mode (all-reduced across processes by SpeechBrain).
        """
        feats = self.modules.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, lengths)
        if stage == sb.Stage.TRAIN and self.hparams.spec_augment is not None:
            feats = self.hparams.spec_augment(feats)
        return feats

    def augment(self, wavs, lengths):
        """Augment every row independently, reproducibly per step and process."""
        augmenter = self.hparams.augment
        if augmenter is None:
            return wavs
        devices = [wavs.device] if wavs.device.type == "cuda" else []
        rank = os.environ.get("RANK", 0)
        seed = zlib.crc32(f"{self.hparams.seed}:{self.optimizer_step}:{self.step}:{rank}".encode())
        # float32 whatever the training precision (bf16 filters are inexact: about -44 dB)
        with torch.random.fork_rng(devices=devices), torch.autocast(wavs.device.type, enabled=False):
            torch.manual_seed(seed)
            return augmenter(wavs.float(), lengths)

    # ------------------------------------------------------------ optimisation
    def total_steps(self):
        """Optimiser steps of the whole run: ``steps_per_epoch // grad_accumulation_factor``
        per epoch (the last micro-batches of an epoch that do not fill a window take no step)."""
        return max(self.epoch_steps() * self.hparams.number_of_epochs, 1)

    def epoch_steps(self):
        """Optimiser steps per epoch."""
        return (self.steps_per_epoch or 1) // self.grad_accumulation_factor

    def on_fit_batch_start(self, batch, should_step):
        """Set the learning rate of this step (warm-up + cosine) in every parameter group."""
        lr = warmup_cosine(
            self.optimizer_step,
            self.hparams.lr,
            self.total_steps(),
            self.hparams.warmup_epochs * self.epoch_steps(),
            self.hparams.final_lr,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr * self.lr_factor(group)

    def lr_factor(self, group):
        """Factor of the scheduled learning rate for a parameter group (its ``lr_scale``)."""
        return group.get("lr_scale", 1.0)

    def fit_batch(self, batch):
        """One training step; a non-finite loss skips the step on every rank.

        The skipped step has no side effect (no update, no ``on_fit_batch_end``,
        and the batch-norm statistics it moved are restored); after
        ``nonfinite_patience`` non-finite losses in a row the run stops.
        """
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        # batch-norm statistics move during the forward pass: keep them to undo a bad step
        # (what a method changes only after a good step, e.g. MoCo's queue, is left out)
        state = ModuleState(self.modules, exclude=self.step_state_exclude)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            if not all_ranks_finite(loss, self.device):
                state.restore()
                self.skip_step(loss)
                if should_step and self.has_gradients():
                    # the window's other micro-batches still make its step (no EMA/enqueue:
                    # this micro-batch has no keys); DDP averages gradients in the window's
                    # last backward, which did not run: average them here (every rank is on
                    # this path, the loss check being global)
                    average_gradients(self.modules.parameters())
                    self.optimizers_step()
                return loss.detach().cpu()
            self.nonfinite_in_a_row = 0
            self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def param_groups(self):
        """The trainable parameters, as optimiser parameter groups; a group's
        ``lr_scale`` multiplies the scheduled learning rate (default 1)."""
        return [{"params": [p for p in self.modules.parameters() if p.requires_grad]}]

    def init_optimizers(self):
        """Give the optimiser the trainable parameters only."""
        self.optimizer = self.opt_class(self.param_groups())
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def _wrap_distributed(self):
        """DDP-wrap the trainable modules, keeping per-process batch norm (see
        :func:`speechbrain_moco.moco.distributed.wrap_ddp`; ``sync_batchnorm: True``
        restores SpeechBrain's SyncBatchNorm, CUDA only)."""
        if not self.distributed_launch:
            return super()._wrap_distributed()
        wrap_ddp(
            self.modules,
            self.device,
            self.hparams.sync_batchnorm and self.device_type == "cuda",
            self.find_unused_parameters,
        )

    def check_setup(self, n_utterances, batch_size):
        """Refuse a training set smaller than one global batch (extended by subclasses)."""
        check_batch(n_utterances, batch_size, world_size())

    def evaluate(self, test_set, max_key=None, min_key=None, progressbar=None, test_loader_kwargs={}):
        """SpeechBrain's evaluate with ``fit``'s loader default: a wrapped dataset (bad audio
        skipped) loses SpeechBrain's automatic ``PaddedBatch``, so it is made the default here."""
        return super().evaluate(
            test_set,
            max_key=max_key,
            min_key=min_key,
            progressbar=progressbar,
            test_loader_kwargs=padded_batch_default(test_loader_kwargs),
        )

    def fit(
        self,
        epoch_counter,
        train_set,
        valid_set=None,
        progressbar=None,
        train_loader_kwargs={},
        valid_loader_kwargs={},
    ):
        """Check the data against the set-up, build the loader, then SpeechBrain's fit.

        Checks (before any training): a crop longer than every utterance, a training
        set smaller than one global batch, and what ``check_setup`` adds. A
        ``sampler`` in ``train_loader_kwargs`` (several sources) has its epoch set
        at every training stage.
        """
        # wrapped / concatenated datasets (bad audio skipped) lose SpeechBrain's automatic
        # PaddedBatch, the validation set's as the training set's
        train_loader_kwargs = padded_batch_default(train_loader_kwargs)
        valid_loader_kwargs = padded_batch_default(valid_loader_kwargs)
        self.sampler = train_loader_kwargs.get("sampler")
        if self.sampler is not None:
            train_loader_kwargs["shuffle"] = False
        if not isinstance(train_set, torch.utils.data.DataLoader):
            crops = self.epoch_crops()
            check_crops(manifest_durations(train_set), crops.crop / crops.sample_rate)
            self.check_setup(len(train_set), train_loader_kwargs.get("batch_size", 1))
            train_set = self.make_dataloader(train_set, stage=sb.Stage.TRAIN, **train_loader_kwargs)
        self.steps_per_epoch = len(train_set)
        if self.epoch_steps() == 0:
            raise ValueError(
                f"{self.steps_per_epoch} batches an epoch and grad_accumulation_factor="
                f"{self.grad_accumulation_factor}: no optimiser step would ever run; lower it"
            )
        self.valid_expected = valid_set is not None
        super().fit(
            epoch_counter, train_set, valid_set, progressbar, train_loader_kwargs, valid_loader_kwargs
        )

    def on_fit_start(self):
        """Check the encoder contract, then resume with a clear architecture error."""
        # un-normalised features: in training mode a global mean_var_norm would fold the
        # check's silence into its running statistics (and, under DDP, once per process)
        check_encoder(
            lambda w, n: self.modules.compute_features(w),
            self.modules.embedding_model,
            self.embedding_dim(),
            self.hparams.sample_rate,
            self.device,
        )
        try:
            super().on_fit_start()
        except RuntimeError as err:
            if not is_architecture_mismatch(err):
                raise
            raise ValueError(
                f"the checkpoint in {self.checkpointer.checkpoints_dir} was written by another "
                f"architecture than this yaml builds; use another --output_folder ({str(err)[:300]})"
            ) from err

    # ------------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Reset accuracy counters; select the crops (and the sampler's draw) of this epoch."""
        self.acc_sum, self.acc_count = 0.0, 0
        crops = self.epoch_crops()
        if stage == sb.Stage.TRAIN:
            crops.set_epoch(epoch)
            if self.sampler is not None and self.train_sampler is None:  # SpeechBrain sets the others
                self.sampler.set_epoch(epoch)
        else:
            crops.set_epoch(-1)  # same validation crops every epoch

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log loss, accuracy and lr; checkpoint after each epoch."""
        stats = {"loss": stage_loss, "acc": self.acc_sum / max(self.acc_count, 1)}
        if stage == sb.Stage.TEST:  # evaluate(): report only, no checkpoint
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
            return
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            if self.valid_expected:
                return
        epoch_stats = {"epoch": epoch, "lr": max(g["lr"] for g in self.optimizer.param_groups)}
        epoch_stats.update(self.epoch_meta())
        epoch_stats["skipped_audio"] = count_skipped(
            os.path.join(self.hparams.output_folder, "skipped_audio.txt")
        )
        valid_stats = stats if stage == sb.Stage.VALID else None
        self.hparams.train_logger.log_stats(
            stats_meta=epoch_stats, train_stats=self.train_stats, valid_stats=valid_stats
        )
        row = dict(epoch_stats, train_loss=self.train_stats["loss"], train_acc=self.train_stats["acc"])
        if valid_stats is not None:
            row.update(valid_loss=valid_stats["loss"], valid_acc=valid_stats["acc"])
        append_history(self.hparams.output_folder, row)
        self.step = 0  # an end-of-epoch checkpoint: the next epoch starts at step 0 on resume too
        self.checkpointer.save_and_keep_only(
            meta={"loss": (valid_stats or self.train_stats)["loss"], "epoch": epoch},
            num_to_keep=self.hparams.keep_checkpoints,
        )
