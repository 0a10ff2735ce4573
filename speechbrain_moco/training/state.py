"""Snapshot and restore of the state a training step moves outside the optimiser.

A forward pass in training mode updates batch-norm running statistics (buffers) and the
running mean and std of a ``global`` SpeechBrain ``InputNormalization``, which keeps them
as plain attributes (``glob_mean``, ``glob_std``, ``count``), not buffers. A step skipped
for a non-finite loss must leave both as they were.
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
        kept = [module for name, module in modules.items() if name not in exclude]
        self.saved = [(buffer, buffer.detach().clone()) for module in kept for buffer in module.buffers()]
        self.statistics = [
            (layer, {k: v.clone() if torch.is_tensor(v) else v for k, v in layer._statistics_dict().items()})
            for module in kept
            for layer in module.modules()
            if hasattr(layer, "_statistics_dict") and hasattr(layer, "_load_statistics_dict")
        ]

    @torch.no_grad()
    def restore(self):
        """Put every saved buffer and normalisation statistic back."""
        for buffer, saved in self.saved:
            buffer.copy_(saved)
        for layer, stats in self.statistics:
            layer._load_statistics_dict(dict(stats))
