"""FIFO queue of key embeddings used as MoCo negatives.

The queue lives in buffers of a small ``nn.Module`` so that SpeechBrain's
Checkpointer saves and restores it (keys, write pointer and the number of keys
ever enqueued) with no extra code.
"""

import torch
import torch.nn.functional as F


class KeyQueue(torch.nn.Module):
    """Ring buffer of L2-normalised keys, kept in float32.

    Arguments
    ---------
    size : int
        Number of stored keys ``K``.
    dim : int
        Embedding dimension ``D``.

    Example
    -------
    >>> q = KeyQueue(size=4, dim=2)
    >>> q.enqueue(torch.eye(2))
    >>> int(q.ptr), int(q.filled)
    (2, 2)
    >>> q.enqueue(torch.ones(3, 2))  # wraps around: writes rows 2, 3, 0
    >>> int(q.ptr), int(q.filled), q.negatives().shape
    (1, 4, torch.Size([4, 2]))
    """

    def __init__(self, size, dim):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got {size}, {dim}")
        self.size = size
        self.dim = dim
        init = F.normalize(torch.randn(size, dim), dim=1)
        self.register_buffer("keys", init)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys):
        """Write ``keys`` (B, D) at the pointer, wrapping around the end.

        Any batch size works: when ``B > K`` only the last ``K`` keys are
        kept, exactly as if they had been written one by one. Keys are cast to
        the queue's dtype (float32) whatever precision produced them.
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"expected keys of shape (B, {self.dim}), got {tuple(keys.shape)}")
        keys = keys.detach().to(self.keys.dtype)
        n = keys.shape[0]
        if n == 0:
            return
        ptr = int(self.ptr)
        if n >= self.size:
            # Keep the last K keys, placed where sequential writes put them.
            last = keys[n - self.size :]
            start = (ptr + n - self.size) % self.size
            idx = (torch.arange(self.size, device=keys.device) + start) % self.size
            self.keys[idx] = last
        else:
            idx = (torch.arange(n, device=keys.device) + ptr) % self.size
            self.keys[idx] = keys
        self.ptr.fill_((ptr + n) % self.size)
        self.filled.fill_(min(int(self.filled) + n, self.size))

    def negatives(self):
        """Return the queued keys as a (K, D) tensor (detached)."""
        return self.keys.detach()
