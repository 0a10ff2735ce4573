"""``MoCoBrain``: Momentum Contrast for speaker embeddings as a SpeechBrain Brain.

Query branch: Fbank -> mean/var norm -> ``embedding_model`` -> ``projector``.
Key branch: ``key_model`` -> ``key_projector``, momentum copies with no
gradient, fed the key views shuffled across batch-norm groups (shuffle-BN: across
processes, and across the ``bn_splits`` groups of split batch norm within one).
``compute_forward`` has no side effects (validation calls it too); the momentum update
and the enqueue happen in ``on_fit_batch_end`` only.
The training loop it shares with the supervised trainer is in
:class:`speechbrain_moco.training.EmbeddingBrain`; the method's pieces (queue, EMA,
InfoNCE, heads, shuffle-BN) are in :mod:`speechbrain_moco.moco`.

Modules expected in ``modules``: ``compute_features``, ``mean_var_norm``,
``embedding_model``, ``projector``, ``key_model``, ``key_projector``, ``queue``.
"""

import collections
import zlib

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.datasets import stack_views
from speechbrain_moco.encoder import embed
from speechbrain_moco.moco.distributed import (
    all_gather_nograd,
    batch_shuffle,
    batch_unshuffle,
    rank,
    world_size,
)
from speechbrain_moco.moco.infonce import infonce_logits, infonce_loss, topk_accuracy
from speechbrain_moco.moco.momentum import ema_update, make_key_twin, momentum_at
from speechbrain_moco.moco.split_bn import split_batchnorm
from speechbrain_moco.training.checks import check_queue
from speechbrain_moco.training.embedding_brain import EmbeddingBrain

logger = get_logger(__name__)


class MoCoBrain(EmbeddingBrain):
    """Momentum Contrast trainer (see module docstring for the modules).

    A contrastive variant is a subclass (``SSPSBrain``): it changes what a query's positive
    and negatives are through :meth:`positive_pairs` and adds its side effects to
    :meth:`on_fit_batch_end`; this class stays plain MoCo.
    """

    # modules whose buffers change only after a good step (not rolled back with batch norm)
    step_state_exclude = ("queue",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        make_key_twin(self.modules.embedding_model, self.modules.key_model)
        make_key_twin(self.modules.projector, self.modules.key_projector)
        # shuffle-BN on one process: batch norm over bn_splits groups, as that many processes
        for name in ("embedding_model", "projector", "key_model", "key_projector"):
            split_batchnorm(self.modules[name], self.hparams.bn_splits)
        self.source_counts = collections.Counter()

    def embedding_dim(self):
        """The queue's key size."""
        return self.modules.queue.dim

    def epoch_crops(self):
        """The two-crop generator of the data pipeline."""
        return self.hparams.two_crops

    # ------------------------------------------------------------------ forward

    def compute_forward(self, batch, stage):
        """Return ``{"logits", "labels", "keys"}`` for a two-view batch.

        View 1 is the query of view 2's key; with ``symmetric_loss`` also view 2 the query of
        view 1's key (both rows of logits, so the loss is the mean of the two directions).
        The keys enqueued are view 2's either way.
        """
        batch = batch.to(self.device)
        wavs, lengths = stack_views(batch)
        clean = None
        if stage == sb.Stage.TRAIN:
            wavs, lengths = self.random_crop_length(wavs, lengths)
            clean = (wavs, lengths)
            wavs = self.augment(wavs, lengths)
        half = wavs.shape[0] // 2
        views = [(wavs[:half], lengths[:half]), (wavs[half:], lengths[half:])]
        pairs = [(0, 1), (1, 0)] if self.hparams.symmetric_loss else [(0, 1)]
        # features view by view: the same values (per-row Fbank and sentence norm) at about half
        # the cost of one 2B-row call on CPU (measured: 19 vs 33 ms at 64 x 2 s)
        queries = [self.query(*views[q], stage) for q, _ in pairs]
        keys = {k: self.key(*views[k], stage) for _, k in pairs}
        positives, masks, extra = self.positive_pairs(batch, keys, clean, stage)
        negatives = self.modules.queue.negatives()
        logits, labels = zip(
            *(
                infonce_logits(query, positives[k], negatives, self.hparams.temperature, masks.get(k))
                for query, (_, k) in zip(queries, pairs)
            )
        )
        return dict(extra, logits=torch.cat(logits), labels=torch.cat(labels), keys=keys[1])

    def positive_pairs(self, batch, keys, clean, stage):
        """``(positives, masks, extra outputs)`` of a batch: plain MoCo takes each view's
        own key as its positive and every queue entry as a negative (no mask, nothing extra).
        ``clean``: the training views before augmentation (None outside training)."""
        return keys, {}, {}

    def step_seed(self, what, per_rank=True):
        """A seed for this step's draws of ``what`` (reproducible on resume; per process
        unless ``per_rank`` is False)."""
        where = rank() if per_rank else "all"
        return zlib.crc32(f"{self.hparams.seed}:{what}:{self.optimizer_step}:{self.step}:{where}".encode())

    def query(self, wavs, lengths, stage):
        """L2-normalised query embeddings (with gradient)."""
        q = embed(self.modules.embedding_model, self.features(wavs, lengths, stage), lengths)
        return F.normalize(self.modules.projector(q), dim=1)

    @torch.no_grad()
    def key(self, wavs, lengths, stage):
        """L2-normalised key embeddings of the momentum branch, shuffled across batch-norm
        groups (processes, and ``bn_splits`` within one) and put back in order."""
        feats = self.features(wavs, lengths, stage)
        # the permutation from a per-step seed: the global generator's state differs on resume
        gen = torch.Generator().manual_seed(self.step_seed("shuffle", per_rank=False))
        feats, lens, idx = batch_shuffle(feats, lengths, splits=self.hparams.bn_splits, generator=gen)
        k = embed(self.modules.key_model, feats, lens)
        return batch_unshuffle(F.normalize(self.modules.key_projector(k), dim=1), idx)

    def random_crop_length(self, wavs, lengths):
        """With ``crop_seconds_min``: both views of this step cut to one length drawn uniformly
        between it and ``crop_seconds`` (the same on every process, reproducible per step);
        the crops stay where the crop drawer put them (their first samples are kept)."""
        low = self.hparams.crop_seconds_min
        if low is None:
            return wavs, lengths
        rate, high = self.hparams.sample_rate, self.hparams.crop_seconds
        # the same on every process (the key shuffle gathers equal-length batches)
        gen = torch.Generator().manual_seed(self.step_seed("crop_length", per_rank=False))
        size = int(round((low + (high - low) * float(torch.rand((), generator=gen))) * rate))
        size = min(size, wavs.shape[1])
        valid = (lengths * wavs.shape[1]).clamp(max=size)
        return wavs[:, :size], valid / size

    def compute_objectives(self, outputs, batch, stage):
        """InfoNCE loss; accumulates the (K+1)-way top-1 accuracy."""
        loss = infonce_loss(outputs["logits"], outputs["labels"])
        n = outputs["labels"].shape[0]
        self.acc_sum += topk_accuracy(outputs["logits"].detach(), outputs["labels"]) * n
        self.acc_count += n
        return loss

    # ------------------------------------------------------------- side effects

    def current_momentum(self):
        """Momentum for the current optimiser step (pure function of it)."""
        return momentum_at(
            self.optimizer_step, self.hparams.momentum, self.hparams.momentum_final, self.total_steps()
        )

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Momentum update of the key branch, then enqueue the global keys."""
        if should_step:
            m = self.current_momentum()
            ema_update(self.modules.key_model, self.modules.embedding_model, m)
            ema_update(self.modules.key_projector, self.modules.projector, m)
        self.modules.queue.enqueue(all_gather_nograd(outputs["keys"]))
        self.source_counts.update(batch.source)

    # ------------------------------------------------------------ optimisation

    def check_setup(self, n_utterances, batch_size):
        """The global batch must fit the training set and the queue, the batch its splits."""
        super().check_setup(n_utterances, batch_size)
        splits = self.hparams.bn_splits
        if batch_size % splits or batch_size // splits < 2:
            raise ValueError(
                f"--batch_size={batch_size} does not split in bn_splits={splits} groups of 2 "
                "rows or more (split batch norm): change --bn_splits"
            )
        check_queue(self.modules.queue.size, batch_size, world_size(), n_utterances)

    # ------------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Crops of this epoch; per-source crop counters."""
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
            self.source_counts = collections.Counter()

    def epoch_meta(self):
        """Momentum, queue fill and the crops drawn from each source (this process)."""
        meta = {"momentum": self.current_momentum(), "queue_filled": int(self.modules.queue.filled)}
        meta.update({f"crops_{k}": v for k, v in sorted(self.source_counts.items())})
        return meta
