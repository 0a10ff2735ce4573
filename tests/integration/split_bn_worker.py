"""Query and key embeddings of one global batch, on 2 gloo ranks or one process with 2 splits.

Run under ``torch.distributed.run --nproc_per_node=2`` (each rank holds 4 contiguous rows of
the 8, batch norm per process) or alone with ``--splits=2`` (split batch norm over the 8).
Saves ``OUT/rank<r>.pt`` with the rows it computed.
"""

import argparse
import os

import torch
import torch.distributed as dist
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_moco.moco.distributed import batch_shuffle, batch_unshuffle, rank, world_size
from speechbrain_moco.moco.split_bn import split_batchnorm

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--splits", type=int, default=1)
    args = parser.parse_args()
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = ECAPA_TDNN(input_size=12, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=8)
    split_batchnorm(model, args.splits)
    x = torch.randn(8, 50, 12)
    local = x.shape[0] // world_size()
    mine = x[rank() * local : (rank() + 1) * local]
    queries = model(mine).squeeze(1)
    torch.manual_seed(1)  # the shuffle's permutation (drawn on rank 0 under DDP)
    shuffled, _, idx = batch_shuffle(mine, splits=args.splits)
    keys = batch_unshuffle(model(shuffled).squeeze(1), idx)
    torch.save(
        {
            "queries": queries.detach(),
            "keys": keys.detach(),
            "running_mean": model.blocks[0].norm.norm.running_mean,
        },
        os.path.join(args.out, f"rank{rank()}.pt"),
    )
    if dist.is_initialized():
        dist.destroy_process_group()
