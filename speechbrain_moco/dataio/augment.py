"""The augmentation pipeline of the two MoCo views (and of the supervised crop).

Each view of a pair is augmented independently: every :class:`Augmentation` applies
its transform to a random subset of rows (probability ``prob`` per row), so the two
views of one utterance rarely share a corruption. The transforms themselves are in
:mod:`speechbrain_moco.dataio.corruption` (noise, reverberation) and
:mod:`speechbrain_moco.dataio.spectral` (speed, EQ, gain), or any waveform module
such as SpeechBrain's ``DropFreq`` / ``DropChunk``.
"""

import inspect

import torch


def rms(x, lengths=None):
    """Root mean square over the valid samples of each row."""
    if lengths is None:
        return x.pow(2).mean(dim=1, keepdim=True).sqrt()
    n = (lengths * x.shape[1]).round().clamp(min=1).unsqueeze(1)
    mask = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < n
    return ((x * mask).pow(2).sum(dim=1, keepdim=True) / n).sqrt()


class Augmentation(torch.nn.Module):
    """One transform of the pipeline and the per-row probability of applying it.

    Arguments
    ---------
    transform : torch.nn.Module
        A waveform transform ``f(wavs)`` or ``f(wavs, lengths)`` on (B, T) rows.
    prob : float
        Probability that a row goes through it.
    """

    def __init__(self, transform, prob):
        super().__init__()
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"augmentation probability must be in [0, 1], got {prob}")
        self.transform = transform
        self.prob = float(prob)
        self.takes_lengths = len(inspect.signature(transform.forward).parameters) >= 2

    def forward(self, wavs, lengths):
        """Apply the transform to ``wavs`` (the rows already selected)."""
        return self.transform(wavs, lengths) if self.takes_lengths else self.transform(wavs)


class RandomAugment(torch.nn.Module):
    """Apply each augmentation, in order, to its own random subset of rows.

    Arguments
    ---------
    augmentations : list of Augmentation
        Transforms with their per-row probabilities, applied in this order.

    Example
    -------
    >>> from speechbrain_moco.dataio.spectral import RandomGain
    >>> aug = RandomAugment([Augmentation(RandomGain(6.0), prob=0.0)])
    >>> x = torch.randn(3, 100)
    >>> torch.equal(aug(x, torch.ones(3)), x)
    True
    """

    def __init__(self, augmentations):
        super().__init__()
        self.augmentations = torch.nn.ModuleList(augmentations)

    def forward(self, wavs, lengths):
        """Return augmented (B, T) waveforms (a new tensor)."""
        out = wavs.clone()
        for aug in self.augmentations:
            if aug.prob <= 0:
                continue
            rows = (torch.rand(out.shape[0]) < aug.prob).nonzero().squeeze(1).to(out.device)
            if rows.numel() == 0:
                continue
            res = aug(out[rows], lengths[rows])
            out[rows] = res[:, : out.shape[1]].to(out.dtype)
        return out
