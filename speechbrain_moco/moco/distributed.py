"""Distributed helpers for MoCo; each is the identity on a single process (with one split).

- ``all_gather_nograd``: concatenate a tensor from every rank (rank order),
  used to enqueue the keys of the global batch so every rank's queue is the
  same.
- ``wrap_ddp``: DDP with per-process batch norm (or SyncBatchNorm when asked).
- ``batch_shuffle`` / ``batch_unshuffle``: shuffle-BN (He et al. 2020). The key
  batch is gathered, permuted at random (drawn on rank 0 and broadcast) and each rank
  encodes its slice, in split batch norm's groups on one process: the batch-norm
  statistics of a key are those of a random group of samples, not of its query's.
  Every rank must hold the same batch size.
"""

import torch
import torch.distributed as dist


def world_size():
    """Number of processes (1 when torch.distributed is not initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank():
    """Rank of this process (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


@torch.no_grad()
def all_gather_nograd(tensor):
    """Gather ``tensor`` (B, ...) from all ranks into (world*B, ...).

    Example
    -------
    >>> x = torch.arange(6.0).view(3, 2)
    >>> torch.equal(all_gather_nograd(x), x)
    True
    """
    if world_size() == 1:
        return tensor
    tensor = tensor.contiguous()
    out = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(out, tensor)
    return torch.cat(out, dim=0)


@torch.no_grad()
def average_gradients(parameters):
    """Average the ``.grad`` of ``parameters`` over the ranks (what DDP's backward does);
    nothing on one process."""
    if world_size() == 1:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size()


@torch.no_grad()
def batch_shuffle(x, lengths=None, splits=1, generator=None):
    """Shuffle a key batch for shuffle-BN; returns ``(x_local, lengths_local, idx_unshuffle)``.

    The global batch (every rank's, in rank order) is permuted at random (drawn on rank 0
    and broadcast) and each rank encodes its slice; in a rank, split batch norm
    (``splits > 1``, :mod:`.split_bn`) normalises contiguous groups of it, as that many
    processes would. The batch-norm statistics of a key are then those of a random group
    of samples, not of its query's group. On one process with ``splits=1`` it is the
    identity (``idx_unshuffle=None``). The permutation comes from ``generator`` (a CPU
    ``torch.Generator``) or the global generator.

    Example
    -------
    >>> x = torch.randn(4, 3)
    >>> y, _, idx = batch_shuffle(x)
    >>> torch.equal(x, y), idx is None
    (True, True)
    >>> y, _, idx = batch_shuffle(x, splits=2)
    >>> torch.equal(y[idx], x)
    True
    """
    if world_size() == 1 and splits == 1:
        return x, lengths, None
    local = x.shape[0]
    x_all = all_gather_nograd(x)
    len_all = all_gather_nograd(lengths) if lengths is not None else None
    # drawn on the CPU, from ``generator`` when given (a per-step seed keeps a resumed run exact)
    perm = torch.randperm(x_all.shape[0], generator=generator).to(x.device)
    if world_size() > 1:
        dist.broadcast(perm, src=0)
    idx_unshuffle = torch.argsort(perm)
    mine = perm.view(world_size(), -1)[rank()]
    if mine.numel() != local:
        raise RuntimeError("shuffle-BN needs the same batch size on every rank")
    return x_all[mine], (len_all[mine] if len_all is not None else None), idx_unshuffle


@torch.no_grad()
def batch_unshuffle(x, idx_unshuffle):
    """Undo ``batch_shuffle`` on the encoded keys (identity when it did nothing)."""
    if idx_unshuffle is None:
        return x
    x_all = all_gather_nograd(x)
    mine = idx_unshuffle.view(world_size(), -1)[rank()]
    return x_all[mine]


def wrap_ddp(modules, device, sync_batchnorm=False, find_unused_parameters=False):
    """DDP-wrap every trainable module of ``modules`` (a ``ModuleDict``), in place.

    SpeechBrain converts every trainable module to SyncBatchNorm under DDP. MoCo keeps
    per-process batch norm, as its authors do, and decorrelates the key branch with
    shuffle-BN (:func:`batch_shuffle`); that also works with gloo on CPU, where
    SyncBatchNorm does not. ``sync_batchnorm=True`` converts to SyncBatchNorm (CUDA).
    """
    device = torch.device(device)
    for name, module in modules.items():
        if any(p.requires_grad for p in module.parameters()):
            if sync_batchnorm:
                module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
            ids = None if device.type == "cpu" else [device]
            modules[name] = torch.nn.parallel.DistributedDataParallel(
                module, device_ids=ids, find_unused_parameters=find_unused_parameters
            )
    return modules


def all_ranks_finite(tensor, device="cpu"):
    """True when ``tensor`` is finite on every process (one all-reduce under DDP).

    Example
    -------
    >>> all_ranks_finite(torch.tensor(1.0)), all_ranks_finite(torch.tensor(float("nan")))
    (True, False)
    """
    bad = torch.tensor(0.0 if torch.isfinite(tensor.detach()).all() else 1.0, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return float(bad) == 0.0
