"""InfoNCE logits, loss and the (K+1)-way accuracy of MoCo.

Convention (moco ``builder.py``): for each query the positive logit is in
column 0 and the K queue negatives follow, so the target class is always 0.
"""

import torch
import torch.nn.functional as F


def infonce_logits(q, k, negatives, temperature=0.07, mask=None):
    """Build ``(logits, labels)`` for a batch of queries.

    Arguments
    ---------
    q : torch.Tensor
        Queries (B, D), L2-normalised.
    k : torch.Tensor
        Positive keys (B, D), L2-normalised, no gradient.
    negatives : torch.Tensor
        Queue of keys (K, D), L2-normalised.
    temperature : float
        Softmax temperature T.
    mask : torch.Tensor, optional
        (B, K) bool, True where a negative is left out of that query's softmax (its logit
        is -inf): e.g. a queue entry of the query's own positive utterance.

    Returns
    -------
    logits : torch.Tensor
        (B, 1 + K) float32, positive in column 0, divided by T.
    labels : torch.Tensor
        (B,) zeros (long).

    Example
    -------
    >>> q = F.normalize(torch.randn(3, 4), dim=1)
    >>> logits, labels = infonce_logits(q, q, F.normalize(torch.randn(5, 4), dim=1), 0.1)
    >>> logits.shape, labels.tolist()
    (torch.Size([3, 6]), [0, 0, 0])
    >>> torch.allclose(logits[:, 0], torch.full((3,), 10.0))
    True
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    # float32 whatever the autocast precision: with T = 0.07 the logits reach
    # 1/T = 14, where bf16 keeps barely two decimals
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = q.float()
        k = k.detach().float()
        negatives = negatives.detach().float()
        pos = (q * k).sum(dim=1, keepdim=True)
        neg = q @ negatives.t()
        if mask is not None:
            neg = neg.masked_fill(mask.to(neg.device), float("-inf"))
        logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return logits, labels


def infonce_loss(logits, labels):
    """Cross entropy over the (K+1) classes, computed in float32.

    Example
    -------
    >>> logits = torch.tensor([[10.0, 0.0, 0.0]])
    >>> round(float(infonce_loss(logits, torch.zeros(1, dtype=torch.long))), 4)
    0.0001
    """
    return F.cross_entropy(logits.float(), labels)


def topk_accuracy(logits, labels, k=1):
    """Fraction of rows whose label is among the ``k`` largest logits.

    Example
    -------
    >>> topk_accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.zeros(2, dtype=torch.long))
    0.5
    """
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == labels.unsqueeze(1)).any(dim=1).float().mean())
