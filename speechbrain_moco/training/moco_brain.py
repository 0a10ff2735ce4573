"""``MoCoBrain``: Momentum Contrast for speaker embeddings as a SpeechBrain Brain.

Query branch: Fbank -> mean/var norm -> ``embedding_model`` -> ``projector``.
Key branch: ``key_model`` -> ``key_projector``, momentum copies with no
gradient. ``compute_forward`` has no side effects (validation calls it too);
the momentum update and the enqueue happen in ``on_fit_batch_end`` only.
The training loop it shares with the supervised trainer is in
:class:`speechbrain_moco.training.EmbeddingBrain`; the method's pieces (queue, EMA,
InfoNCE, heads, shuffle-BN) are in :mod:`speechbrain_moco.moco`.

Modules expected in ``modules``: ``compute_features``, ``mean_var_norm``,
``embedding_model``, ``projector``, ``key_model``, ``key_projector``, ``queue``.
"""

import collections

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.datasets import stack_views
from speechbrain_moco.encoder import embed
from speechbrain_moco.moco.distributed import all_gather_nograd, batch_shuffle, batch_unshuffle, world_size
from speechbrain_moco.moco.infonce import infonce_logits, infonce_loss, topk_accuracy
from speechbrain_moco.moco.momentum import ema_update, make_key_twin, momentum_at
from speechbrain_moco.training.checks import check_queue
from speechbrain_moco.training.embedding_brain import EmbeddingBrain

logger = get_logger(__name__)


class MoCoBrain(EmbeddingBrain):
    """Momentum Contrast trainer (see module docstring for the modules)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        make_key_twin(self.modules.embedding_model, self.modules.key_model)
        make_key_twin(self.modules.projector, self.modules.key_projector)
        self.source_counts = collections.Counter()

    def embedding_dim(self):
        """The queue's key size."""
        return self.modules.queue.dim

    def epoch_crops(self):
        """The two-crop generator of the data pipeline."""
        return self.hparams.two_crops

    # ------------------------------------------------------------------ forward

    def compute_forward(self, batch, stage):
        """Return ``{"logits", "labels", "keys"}`` for a two-view batch."""
        batch = batch.to(self.device)
        wavs, lengths = stack_views(batch)
        if stage == sb.Stage.TRAIN:
            wavs = self.augment(wavs, lengths)
        half = wavs.shape[0] // 2
        # features view by view: the same values (per-row Fbank and sentence norm) at about half
        # the cost of one 2B-row call on CPU (measured: 19 vs 33 ms at 64 x 2 s)
        q_feats = self.features(wavs[:half], lengths[:half], stage)
        q = embed(self.modules.embedding_model, q_feats, lengths[:half])
        q = F.normalize(self.modules.projector(q), dim=1)
        with torch.no_grad():
            k_feats = self.features(wavs[half:], lengths[half:], stage)
            k_feats, k_lens, idx = batch_shuffle(k_feats, lengths[half:])
            k = embed(self.modules.key_model, k_feats, k_lens)
            k = F.normalize(self.modules.key_projector(k), dim=1)
            k = batch_unshuffle(k, idx)
        logits, labels = infonce_logits(q, k, self.modules.queue.negatives(), self.hparams.temperature)
        return {"logits": logits, "labels": labels, "keys": k}

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
        """The global batch must fit the training set and the queue."""
        super().check_setup(n_utterances, batch_size)
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
