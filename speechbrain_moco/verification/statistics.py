"""Statistics pooling (mean + std over frames) of features: the baseline embedding that
needs no training."""

import torch


def stats_embedding(feats, lengths=None):
    """Mean and standard deviation of features over valid frames.

    The valid length of sentence ``i`` is ``round(lengths[i] * T)`` frames (at
    least one), as in SpeechBrain's ``StatisticsPooling``; padding frames are
    ignored. The standard deviation is the population one (divides by the
    number of valid frames), so a single valid frame gives 0, not NaN.

    Arguments
    ---------
    feats : torch.Tensor
        Features, shape (B, T, F).
    lengths : torch.Tensor, optional
        Relative valid lengths in (0, 1], shape (B,). None means all valid.

    Returns
    -------
    torch.Tensor
        ``[mean, std]`` concatenated, shape (B, 2F).

    Example
    -------
    >>> feats = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> stats_embedding(feats, torch.tensor([2 / 3]))
    tensor([[2., 1.]])
    """
    if feats.dim() != 3:
        raise ValueError(f"expected (B, T, F) features, got {tuple(feats.shape)}")
    batch, n_frames, _ = feats.shape
    if lengths is None:
        lengths = torch.ones(batch, device=feats.device)
    n_valid = torch.round(lengths.to(feats.device).float() * n_frames)
    n_valid = n_valid.clamp(min=1, max=n_frames)
    frames = torch.arange(n_frames, device=feats.device)
    mask = (frames[None, :] < n_valid[:, None]).unsqueeze(-1)
    count = n_valid.to(feats.dtype)[:, None]
    zeros = torch.zeros_like(feats)
    # where() rather than a product so that inf/NaN padding cannot leak in.
    mean = torch.where(mask, feats, zeros).sum(dim=1) / count
    centred = torch.where(mask, feats - mean[:, None, :], zeros)
    std = torch.sqrt((centred**2).sum(dim=1) / count)
    return torch.cat([mean, std], dim=1)


def stats_embed_fn(compute_features, normalize=None):
    """Embedding function ``(wavs, lens) -> (B, 2F)``: mean+std of ``compute_features``,
    after ``normalize(feats, lens)`` when given (e.g. a recipe's ``mean_var_norm``).

    Example
    -------
    >>> fn = stats_embed_fn(lambda w: w.unsqueeze(-1))
    >>> fn(torch.tensor([[1.0, 3.0]]), torch.ones(1))
    tensor([[2., 1.]])
    """

    def fn(wavs, lens):
        feats = compute_features(wavs)
        if normalize is not None:
            feats = normalize(feats, lens)
        return stats_embedding(feats, lens)

    return fn
