"""The MoCo method: key queue, momentum (EMA) update, InfoNCE, projection heads and the
distributed helpers (all-gather of keys, shuffle-BN), each independent of SpeechBrain's Brain.

The Brain that puts them together is :class:`speechbrain_moco.training.MoCoBrain`.
"""

from speechbrain_moco.moco.distributed import (
    all_gather_nograd,
    batch_shuffle,
    batch_unshuffle,
    rank,
    world_size,
    wrap_ddp,
)
from speechbrain_moco.moco.heads import ProjectionHead
from speechbrain_moco.moco.infonce import infonce_logits, infonce_loss, topk_accuracy
from speechbrain_moco.moco.momentum import ema_update, make_key_twin, momentum_at, unwrap
from speechbrain_moco.moco.queue import KeyQueue
from speechbrain_moco.moco.split_bn import split_batchnorm

__all__ = [
    "KeyQueue",
    "ProjectionHead",
    "all_gather_nograd",
    "batch_shuffle",
    "batch_unshuffle",
    "ema_update",
    "infonce_logits",
    "infonce_loss",
    "make_key_twin",
    "momentum_at",
    "rank",
    "split_batchnorm",
    "topk_accuracy",
    "unwrap",
    "world_size",
    "wrap_ddp",
]
