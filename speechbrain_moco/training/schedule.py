"""Learning-rate schedule as a pure function of the optimiser step."""

import math


def warmup_cosine(step, base_lr, total_steps, warmup_steps=0, final_lr=0.0):
    """Linear warm-up to ``base_lr`` then cosine decay to ``final_lr``.

    Example
    -------
    >>> warmup_cosine(0, 1.0, 100, warmup_steps=10)
    0.1
    >>> warmup_cosine(100, 1.0, 100, 10, 0.01)
    0.01
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    frac = min((step - warmup_steps) / span, 1.0)
    return final_lr + (base_lr - final_lr) * (1 + math.cos(math.pi * frac)) / 2
