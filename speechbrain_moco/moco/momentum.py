"""Momentum (EMA) update of the key branch and its step-driven schedule.

The momentum is a pure function of the optimiser step, so a run resumed from
a checkpoint (which stores the step) continues with exactly the same values.
"""

import math

import torch


def momentum_at(step, base=0.999, final=None, total_steps=None):
    """Momentum coefficient for a given optimiser step.

    Constant ``base`` when ``final`` is None, otherwise a cosine ramp from
    ``base`` (step 0) to ``final`` (``total_steps`` and after), as in BYOL
    and MoCo v3.

    Example
    -------
    >>> momentum_at(10, base=0.99)
    0.99
    >>> momentum_at(0, 0.99, 1.0, 100), momentum_at(100, 0.99, 1.0, 100)
    (0.99, 1.0)
    >>> round(momentum_at(50, 0.99, 1.0, 100), 6)
    0.995
    """
    if not 0.0 <= base <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {base}")
    if final is None:
        return float(base)
    if not total_steps or total_steps <= 0:
        raise ValueError("a momentum ramp needs total_steps > 0")
    frac = min(max(step, 0) / total_steps, 1.0)
    return float(final - (final - base) * (math.cos(math.pi * frac) + 1) / 2)


def unwrap(module):
    """Return the module inside a DDP / DataParallel wrapper, if any."""
    return getattr(module, "module", module)


@torch.no_grad()
def ema_update(key_module, query_module, m):
    """``key <- m * key + (1 - m) * query`` for every parameter.

    Floating buffers (e.g. batch-norm running statistics) are averaged the
    same way; integer buffers (``num_batches_tracked``) are copied. Parameters
    are matched by name, so a query encoder converted to SyncBatchNorm or
    wrapped by DDP still updates its plain twin.

    Example
    -------
    >>> q, k = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> ema_update(k, q, 0.0)
    >>> torch.equal(k.weight, q.weight)
    True
    """
    query = dict(unwrap(query_module).named_parameters())
    query.update(unwrap(query_module).named_buffers())
    key = dict(unwrap(key_module).named_parameters())
    key.update(unwrap(key_module).named_buffers())
    if query.keys() != key.keys():
        missing = sorted(set(query) ^ set(key))[:5]
        raise ValueError(f"query and key branches differ in structure: {missing}")
    floats_k, floats_q = [], []
    for name, k in key.items():
        q = query[name].detach()
        if k.is_floating_point():
            floats_k.append(k)
            floats_q.append(q.to(k.dtype))
        else:
            k.copy_(q)
    if floats_k:  # one fused multi-tensor op: k + (1 - m) (q - k) = m k + (1 - m) q
        with torch.no_grad():
            torch._foreach_lerp_(floats_k, floats_q, 1.0 - m)


def make_key_twin(query_module, key_module):
    """Copy the query weights into ``key_module`` and freeze it.

    Example
    -------
    >>> q, k = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> _ = make_key_twin(q, k)
    >>> torch.equal(q.weight, k.weight), k.weight.requires_grad
    (True, False)
    """
    try:
        key_module.load_state_dict(unwrap(query_module).state_dict())
    except RuntimeError as err:
        raise ValueError(f"key branch does not match the query branch: {err}") from err
    for p in key_module.parameters():
        p.requires_grad_(False)
    return key_module
