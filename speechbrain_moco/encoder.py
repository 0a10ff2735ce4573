"""The encoder output contract, defined once.

SpeechBrain's ECAPA-TDNN and x-vector return ``(B, 1, D)``; other encoders
return ``(B, D)``. Anything else (a tuple, a 3-D tensor with more than one
frame) is an error rather than a silent reshape.
"""

import torch


def embed(encoder, feats, lengths=None):
    """Run ``encoder(feats, lengths)`` and return (B, D) embeddings.

    Example
    -------
    >>> from speechbrain.lobes.models.Xvector import Xvector
    >>> enc = Xvector(in_channels=20, tdnn_channels=[8] * 5, lin_neurons=6)
    >>> embed(enc, torch.randn(3, 50, 20), torch.ones(3)).shape
    torch.Size([3, 6])
    """
    out = encoder(feats, lengths) if lengths is not None else encoder(feats)
    return check_embedding(out, feats.shape[0])


def check_embedding(out, batch):
    """Validate an encoder output and flatten ``(B, 1, D)`` to ``(B, D)``."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"encoder must return a tensor of shape (B, 1, D) or (B, D), got {type(out).__name__}"
        )
    if out.dim() == 3 and out.shape[1] == 1:
        out = out.squeeze(1)
    if out.dim() != 2 or out.shape[0] != batch:
        raise ValueError(f"encoder must return (B, 1, D) or (B, D) with B={batch}, got {tuple(out.shape)}")
    return out
