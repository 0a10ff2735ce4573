"""Split batch norm: one process computes batch-norm statistics as G processes would.

Shuffle-BN (He et al. 2020, sec. 3.3) needs the keys of a batch to be normalised with
statistics of other samples than their queries: across GPUs, each process normalises its
own slice of a shuffled key batch. On one process MoCo's authors split the batch instead
(their single-GPU demo): with ``num_splits = G`` every batch-norm layer, in training,
normalises G contiguous groups of rows separately, as G processes holding those rows
would; its running statistics become the mean of the groups'. In evaluation the layer is
the plain batch norm it was, with the same parameters and state-dict keys, so checkpoints,
export and inference do not change.
"""

import torch
import torch.nn.functional as F


def _split_forward(self, x):
    """Batch norm of ``x`` (B, C, ...) over ``num_splits`` contiguous groups of rows."""
    g = self.num_splits
    if not self.training or g == 1:
        return super(type(self), self).forward(x)  # the original batch-norm class
    if x.shape[0] % g:
        raise ValueError(f"a batch of {x.shape[0]} rows cannot be split in bn_splits={g} groups")
    b, c = x.shape[0] // g, x.shape[1]
    # (G*b, C, ...) -> (b, G*C, ...): group k's rows become channels k*C .. (k+1)*C - 1
    grouped = x.reshape(g, b, c, *x.shape[2:]).transpose(0, 1).reshape(b, g * c, *x.shape[2:])
    mean, var = self.running_mean.repeat(g), self.running_var.repeat(g)
    out = F.batch_norm(
        grouped,
        mean,
        var,
        None if self.weight is None else self.weight.repeat(g),
        None if self.bias is None else self.bias.repeat(g),
        True,
        self.momentum,
        self.eps,
    )
    with torch.no_grad():
        self.running_mean.copy_(mean.view(g, c).mean(dim=0))
        self.running_var.copy_(var.view(g, c).mean(dim=0))
        self.num_batches_tracked += 1
    return out.reshape(b, g, c, *x.shape[2:]).transpose(0, 1).reshape(x.shape)


_CLASSES = {}


def _split_class(cls):
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Split{cls.__name__}", (cls,), {"forward": _split_forward})
    return _CLASSES[cls]


def split_batchnorm(module, num_splits):
    """Make every batch-norm layer of ``module`` (in place) normalise ``num_splits`` groups.

    Only layers that track running statistics with a momentum are changed; returns the
    number of layers changed. ``num_splits=1`` changes nothing.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    >>> split_batchnorm(net, 2)
    1
    >>> x = torch.randn(8, 3)
    >>> y = net(x)  # rows 0-3 and 4-7 normalised separately
    >>> torch.allclose(y[:4].mean(0), torch.zeros(4), atol=1e-6)
    True
    """
    if num_splits < 1:
        raise ValueError(f"bn_splits must be >= 1, got {num_splits}")
    if num_splits == 1:
        return 0
    changed = 0
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
            layer, torch.nn.SyncBatchNorm
        ):
            if not layer.track_running_stats or layer.momentum is None:
                continue
            if "Split" not in type(layer).__name__:
                layer.__class__ = _split_class(type(layer))
            layer.num_splits = int(num_splits)
            changed += 1
    return changed
