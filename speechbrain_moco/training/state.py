"""Snapshot and restore of the state a training step moves outside the optimiser.

A forward pass in training mode updates batch-norm running statistics (buffers); a
step skipped for a non-finite loss must leave them as they were.
"""

import torch


class ModuleState:
    """The buffers of ``modules`` (a ``ModuleDict``), copied now, restorable later.

    Arguments
    ---------
    modules : torch.nn.ModuleDict
        The Brain's modules.
    exclude : tuple of str
        Module names left out (e.g. the MoCo queue, which a skipped step never touches).

    Example
    -------
    >>> bn = torch.nn.BatchNorm1d(2)
    >>> state = ModuleState(torch.nn.ModuleDict({"bn": bn}))
    >>> _ = bn(torch.randn(4, 2) + 5.0)
    >>> state.restore(); bn.running_mean.tolist()
    [0.0, 0.0]
    """

    def __init__(self, modules, exclude=()):
        self.saved = [
            (buffer, buffer.detach().clone())
            for name, module in modules.items()
            if name not in exclude
            for buffer in module.buffers()
        ]

    @torch.no_grad()
    def restore(self):
        """Put every saved buffer back."""
        for buffer, saved in self.saved:
            buffer.copy_(saved)
